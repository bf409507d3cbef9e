"""Mutual TLS for the peer port (``--peer-cert``, ``--peer-key``, ``--peer-ca``).

Both ends present a certificate signed by the cluster CA and verify the
other's against it: the listener wraps its factory in a TLS server that
requires a client certificate (``CertificateOptions(verify=True,
requireCertificate=True, caCerts=[CA])``); the dialer uses
``optionsForClientTLS(peer name, trustRoot=CA, clientCertificate=own)``,
so the acceptor's certificate must name the node dialed (subjectAltName
DNS). The handshake then refuses a peer whose certificate does not name
the node it claims to be (``cert_names``: the subject CN and the SAN DNS
names). ``doozertw.peer.certs`` makes such certificates.
"""

from __future__ import annotations

import attrs
from twisted.internet.endpoints import clientFromString, wrapClientTLS
from twisted.internet.ssl import (
    Certificate, CertificateOptions, PrivateCertificate, optionsForClientTLS,
)
from twisted.protocols.tls import TLSMemoryBIOFactory


class TLSConfigError(ValueError):
    """A certificate, key or CA file is missing or unusable."""


@attrs.frozen
class TLSSettings:
    """This node's certificate and key and the cluster CA, loaded."""

    own: PrivateCertificate
    ca: Certificate

    @classmethod
    def load(cls, cert_path: str, key_path: str, ca_path: str) -> TLSSettings:
        """Read PEM files; raises TLSConfigError naming the bad file."""
        cert_pem, key_pem, ca_pem = (_read(p) for p in (cert_path, key_path, ca_path))
        try:
            own = PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
        except Exception as exc:
            raise TLSConfigError(f"{cert_path} / {key_path}: not a PEM certificate "
                                 f"and its key: {exc}") from None
        try:
            ca = Certificate.loadPEM(ca_pem)
        except Exception as exc:
            raise TLSConfigError(f"{ca_path}: not a PEM certificate: {exc}") from None
        return cls(own, ca)

    def server_options(self) -> CertificateOptions:
        return CertificateOptions(
            privateKey=self.own.privateKey.original, certificate=self.own.original,
            verify=True, requireCertificate=True, caCerts=[self.ca.original])

    def server_factory(self, factory):
        """``factory`` behind a TLS server requiring CA-signed client certs."""
        return TLSMemoryBIOFactory(self.server_options(), False, factory)

    def client_endpoint(self, reactor, endpoint: str, peer_name: str):
        """A client endpoint to ``endpoint`` speaking TLS, presenting this
        node's certificate and accepting only a CA-signed one naming
        ``peer_name``."""
        options = optionsForClientTLS(peer_name, trustRoot=self.ca,
                                      clientCertificate=self.own)
        return wrapClientTLS(options, clientFromString(reactor, endpoint))


def cert_names(x509) -> set[str]:
    """The subject CN and SAN DNS names of a pyOpenSSL X509 certificate."""
    from cryptography import x509 as cx
    from cryptography.x509.oid import NameOID
    cert = x509.to_cryptography()
    names = {a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(cx.SubjectAlternativeName)
        names.update(san.value.get_values_for_type(cx.DNSName))
    except cx.ExtensionNotFound:
        pass
    return {str(n) for n in names}


def peer_name_problem(transport, claimed: str) -> str | None:
    """Why the TLS peer on ``transport`` may not claim to be ``claimed``
    (no certificate, or one naming other nodes), or None."""
    get = getattr(transport, "getPeerCertificate", None)
    cert = get() if get is not None else None
    if cert is None:
        return "no TLS client certificate"
    names = cert_names(cert)
    if claimed not in names:
        return f"certificate names {sorted(names)}, not {claimed!r}"
    return None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TLSConfigError(f"cannot read {path}: {exc.strerror}") from None


__all__ = ["TLSConfigError", "TLSSettings", "cert_names", "peer_name_problem"]
