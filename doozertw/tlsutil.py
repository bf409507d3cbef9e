"""TLS for the client port, the web port and the Python clients.

Server side: the client port (``--listen``) and web port (``--web``) take
Twisted ``ssl:`` endpoint strings (``ssl:8046:privateKey=KEY:certKey=CERT``).
With ``--client-ca FILE`` the client port additionally requires a client
certificate signed by that CA (``mutual_tls_endpoint``); a connection that
presents one gets read-write rights without ACCESS (``verified_client``).
``cleartext_exposure`` says when a secret would cross the network in clear.

Client side: ``ClientTLS`` names a CA file (verification is always on),
an optional client certificate and key, and optionally the name the
server's certificate must carry (default: the host dialed). It builds a
stdlib ``ssl.SSLContext`` (blocking client, ``doozer snapshot save``) and
Twisted client options (DoozerClient).
"""

from __future__ import annotations

import ipaddress
import ssl

import attrs

# Twisted and pyOpenSSL are imported where used, so the blocking client
# and the ``doozer`` command start without them.


class TLSConfigError(ValueError):
    """A certificate, key or CA file is missing or unusable."""

LOOPBACK_NAMES = {"localhost"}


@attrs.frozen
class ClientTLS:
    """What a client needs to speak TLS: ``ca`` (PEM file the server's
    certificate must chain to), optionally ``cert``/``key`` (PEM files of a
    client certificate; ``key`` defaults to ``cert``) and ``name`` (the name
    the server certificate must carry; default: the host dialed)."""

    ca: str
    cert: str | None = None
    key: str | None = None
    name: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying stdlib client context; raises TLSConfigError."""
        try:
            context = ssl.create_default_context(cafile=self.ca)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"{self.ca}: cannot load CA: {exc}") from None
        if self.cert:
            try:
                context.load_cert_chain(self.cert, self.key or self.cert)
            except (OSError, ssl.SSLError) as exc:
                raise TLSConfigError(
                    f"{self.cert} / {self.key}: cannot load certificate and key: {exc}"
                ) from None
        return context

    def server_name(self, host: str) -> str:
        return self.name or host

    def twisted_options(self, host: str):
        """Twisted client TLS options verifying the server as ``server_name(host)``."""
        from twisted.internet.ssl import PrivateCertificate, optionsForClientTLS
        ca = _load_certificate(self.ca)
        own = None
        if self.cert:
            pem = _read(self.cert) + b"\n" + _read(self.key or self.cert)
            try:
                own = PrivateCertificate.loadPEM(pem)
            except Exception as exc:
                raise TLSConfigError(f"{self.cert} / {self.key}: not a PEM certificate "
                                     f"and its key: {exc}") from None
        return optionsForClientTLS(self.server_name(host), trustRoot=ca,
                                   clientCertificate=own)


def client_tls(ca=None, cert=None, key=None, name=None) -> ClientTLS | None:
    """A ClientTLS, or None when no CA is given; a certificate without a CA
    is refused (the server would go unverified)."""
    if not ca:
        if cert or key:
            raise TLSConfigError("a TLS client certificate needs a CA file (tls_ca) too")
        return None
    return ClientTLS(ca=ca, cert=cert or None, key=key or None, name=name or None)


# -- server side ----------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TLSConfigError(f"cannot read {path}: {exc.strerror}") from None


def _load_certificate(path: str):
    from twisted.internet.ssl import Certificate
    try:
        return Certificate.loadPEM(_read(path))
    except TLSConfigError:
        raise
    except Exception as exc:
        raise TLSConfigError(f"{path}: not a PEM certificate: {exc}") from None


def mutual_tls_endpoint(reactor, description: str, client_ca: str, factory):
    """(endpoint, wrapped factory) listening on the ``ssl:`` ``description``
    and requiring client certificates signed by ``client_ca``.

    Understands the ``ssl:`` keys ``port``, ``privateKey``, ``certKey``,
    ``interface``, ``backlog`` and ``extraCertChain``; raises
    TLSConfigError for anything else or a non-``ssl:`` description.
    """
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, _parse
    from twisted.internet.ssl import CertificateOptions, PrivateCertificate
    from twisted.protocols.tls import TLSMemoryBIOFactory
    args, kw = _parse(description)
    if not args or args[0] != "ssl":
        raise TLSConfigError(f"--client-ca needs an ssl: client port, not {description!r}")
    if len(args) > 1:
        kw.setdefault("port", args[1])
    unknown = set(kw) - {"port", "privateKey", "certKey", "interface", "backlog",
                         "extraCertChain"}
    if unknown or "port" not in kw:
        raise TLSConfigError(f"{description!r}: with --client-ca the ssl: endpoint takes "
                             "port, privateKey, certKey, interface, backlog, extraCertChain")
    key_path = kw.get("privateKey", "server.pem")
    cert_path = kw.get("certKey", key_path)
    try:
        own = PrivateCertificate.loadPEM(_read(cert_path) + b"\n" + _read(key_path))
    except TLSConfigError:
        raise
    except Exception as exc:
        raise TLSConfigError(f"{cert_path} / {key_path}: not a PEM certificate and "
                             f"its key: {exc}") from None
    chain = []
    if kw.get("extraCertChain"):
        chain = [c.original for c in _load_chain(kw["extraCertChain"])]
    options = CertificateOptions(
        privateKey=own.privateKey.original, certificate=own.original,
        extraCertChain=chain or None, verify=True, requireCertificate=True,
        caCerts=[_load_certificate(client_ca).original])
    interface = kw.get("interface", "")
    kind = TCP6ServerEndpoint if ":" in interface else TCP4ServerEndpoint
    endpoint = kind(reactor, int(kw["port"]), backlog=int(kw.get("backlog", 50)),
                    interface=interface)
    # CertificateOptions provides IOpenSSLContextFactory through zope.interface,
    # which mypy does not see.
    return endpoint, TLSMemoryBIOFactory(options, False, factory)  # type: ignore[arg-type]


def _load_chain(path: str):
    from twisted.internet.ssl import Certificate
    pem = _read(path)
    marker = b"-----END CERTIFICATE-----"
    return [Certificate.loadPEM(block + marker) for block in pem.split(marker)
            if block.strip()]


def verified_client(transport) -> bool:
    """True if ``transport`` is a TLS connection whose peer presented a
    certificate (verified by the handshake: only a listener built by
    ``mutual_tls_endpoint`` requests and verifies one)."""
    get = getattr(transport, "getPeerCertificate", None)
    return get is not None and get() is not None


def cleartext_exposure(description: str) -> str | None:
    """Why a secret sent to the listener ``description`` would cross the
    network in clear (plain TCP not bound to loopback), or None."""
    from twisted.internet.endpoints import _parse
    try:
        args, kw = _parse(description)
    except Exception:
        return None
    if not args:
        return None
    kind = args[0]
    if kind.isdigit():  # a bare port number is tcp on every interface
        kind, kw = "tcp", {}
    if kind not in ("tcp", "tcp6"):
        return None
    interface = kw.get("interface", "")
    if _is_loopback(interface):
        return None
    return f"plain TCP on {interface or 'every interface'}"


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["ClientTLS", "TLSConfigError", "cleartext_exposure", "client_tls",
           "mutual_tls_endpoint", "verified_client"]
