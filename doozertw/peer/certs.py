"""Make a cluster CA and per-node certificates for mutual TLS between peers.

    python -m doozertw.peer.certs --out DIR n1 n2 n3

writes ``DIR/ca.pem`` and ``DIR/ca.key`` (the CA; keep the key offline)
and, per node, ``DIR/<name>.pem`` and ``DIR/<name>.key``: an ECDSA P-256
certificate whose subject CN and subjectAltName DNS name are the node's
name, usable as TLS server and client. An existing ``ca.pem``/``ca.key``
in DIR is reused, so a later run adds nodes to the same cluster. Keys are
written mode 0600. Uses the ``cryptography`` package (pulled in by
pyOpenSSL, ``twisted[tls]``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DAYS = 825


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject, issuer, public_key, days):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days)))


def make_ca(common_name: str = "doozertw cluster CA", days: int = DEFAULT_DAYS):
    """(certificate, key) of a new self-signed CA."""
    key = _key()
    cert = (_builder(_name(common_name), _name(common_name), key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_node(name: str, ca_cert, ca_key, days: int = DEFAULT_DAYS):
    """(certificate, key) for node ``name``, signed by the CA."""
    key = _key()
    cert = (_builder(_name(name), ca_cert.subject, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def cert_pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: str, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_or_make_ca(out: str, days: int = DEFAULT_DAYS):
    """The CA in ``out`` (ca.pem, ca.key), made there if absent."""
    cert_path, key_path = os.path.join(out, "ca.pem"), os.path.join(out, "ca.key")
    if os.path.exists(cert_path) and os.path.exists(key_path):
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        return cert, key
    cert, key = make_ca(days=days)
    _write(cert_path, cert_pem(cert))
    _write(key_path, key_pem(key), private=True)
    return cert, key


def write_node(out: str, name: str, ca_cert, ca_key, days: int = DEFAULT_DAYS) -> None:
    cert, key = make_node(name, ca_cert, ca_key, days)
    _write(os.path.join(out, f"{name}.pem"), cert_pem(cert))
    _write(os.path.join(out, f"{name}.key"), key_pem(key), private=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m doozertw.peer.certs",
        description="Make a cluster CA (or reuse the one in --out) and a "
                    "certificate per node for --peer-cert/--peer-key/--peer-ca.")
    parser.add_argument("--out", required=True, help="directory for the PEM files")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS,
                        help=f"validity in days [default: {DEFAULT_DAYS}]")
    parser.add_argument("names", nargs="+", help="node names (as given to --name)")
    args = parser.parse_args(argv)
    from doozertw.config import ConfigError, check_name
    try:
        for name in args.names:
            check_name(name)
    except ConfigError as exc:
        parser.error(str(exc))
    os.makedirs(args.out, exist_ok=True)
    ca_cert, ca_key = load_or_make_ca(args.out, args.days)
    for name in args.names:
        write_node(args.out, name, ca_cert, ca_key, args.days)
        print(f"{os.path.join(args.out, name)}.pem / .key")
    print(f"CA: {os.path.join(args.out, 'ca.pem')} (keep ca.key offline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
