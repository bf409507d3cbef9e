"""Doozer URIs: ``doozer:?ca=host:port&ca=host:port&cn=name&sk=secret``.

``ca`` (repeatable) is an address to try, ``cn`` the cluster name, ``sk``
a secret the client presents with ACCESS on every connection. This is the
Go client's format; like it, a URI without the ``doozer:?`` prefix or
without any address is invalid (there is no DzNS boot lookup here).

TLS (doozertw only): ``tls_ca=FILE`` makes the client speak TLS and verify
the server's certificate against that CA (and the host dialed, or
``tls_name=NAME``); ``tls_cert=FILE`` and ``tls_key=FILE`` add a client
certificate (see docs/security.md).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

import attrs

from doozertw.tlsutil import ClientTLS, TLSConfigError, client_tls

PREFIX = "doozer:?"
DEFAULT_PORT = 8046
DEFAULT_URI = "doozer:?ca=127.0.0.1:8046"


class InvalidURI(ValueError):
    """Not a doozer URI, or one naming no address."""


@attrs.frozen
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@attrs.frozen
class DoozerURI:
    addresses: tuple[Address, ...]
    cluster: str | None = None
    secret: bytes | None = None
    tls: ClientTLS | None = None


TLS_KEYS = ("tls_ca", "tls_cert", "tls_key", "tls_name")

AddressLike = Address | str | tuple[str, int | str]
"""What ``parse_address`` accepts: an Address, ``host:port`` text or (host, port)."""

Target = DoozerURI | str | Iterable[AddressLike]
"""What the clients connect to: a DoozerURI, URI text, one address or several."""


def parse_address(text: AddressLike, default_port: int = DEFAULT_PORT) -> Address:
    """``host:port``, ``[v6]:port`` or ``host`` into an Address."""
    if isinstance(text, Address):
        return text
    if isinstance(text, tuple):
        host, port = text
        return Address(host, int(port))
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise InvalidURI(f"bad address {text!r}")
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise InvalidURI(f"bad port in {text!r}") from None
    if not 0 < number < 65536:
        raise InvalidURI(f"bad port in {text!r}")
    return Address(host, number)


def parse_uri(uri: str) -> DoozerURI:
    """Parse a doozer URI; raises InvalidURI."""
    if not uri.startswith(PREFIX):
        raise InvalidURI("invalid uri")
    query = urllib.parse.parse_qs(uri[len(PREFIX):], keep_blank_values=True)
    addresses = tuple(parse_address(a) for a in query.get("ca", ()) if a)
    if not addresses:
        raise InvalidURI("invalid uri")
    cluster = query.get("cn", [None])[0]
    secret = query.get("sk", [None])[0]
    tls = _tls_of(query)
    return DoozerURI(addresses, cluster,
                     secret.encode("utf-8") if secret is not None else None, tls)


def _tls_of(query: dict[str, list[str]]) -> ClientTLS | None:
    try:
        return client_tls(*(query.get(key, [None])[0] for key in TLS_KEYS))
    except TLSConfigError as e:
        raise InvalidURI(str(e)) from None


def make_uri(addresses: Iterable[AddressLike], cluster: str | None = None,
             secret: bytes | str | None = None, tls: ClientTLS | None = None) -> str:
    """The URI naming ``addresses`` (and a cluster name, secret and ClientTLS)."""
    pairs = [("ca", str(parse_address(a))) for a in addresses]
    if cluster:
        pairs.append(("cn", cluster))
    if secret:
        pairs.append(("sk", secret.decode("utf-8") if isinstance(secret, bytes) else secret))
    if tls is not None:
        values = (tls.ca, tls.cert, tls.key, tls.name)
        pairs.extend((key, value) for key, value in zip(TLS_KEYS, values) if value)
    return PREFIX + urllib.parse.urlencode(pairs, safe=":[]/")


def resolve(target: Target, secret: bytes | str | None = None,
            tls: ClientTLS | None = None) -> DoozerURI:
    """A DoozerURI from a URI string, one address, or a list of addresses.

    ``secret`` and ``tls`` (a ClientTLS) override the URI's own.
    """
    if isinstance(target, DoozerURI):
        parsed = target
    elif isinstance(target, str) and target.startswith(PREFIX):
        parsed = parse_uri(target)
    else:
        if isinstance(target, str):
            target = [target]
        addresses = tuple(parse_address(a) for a in target)
        if not addresses:
            raise InvalidURI("no address given")
        parsed = DoozerURI(addresses)
    if secret is not None:
        parsed = attrs.evolve(parsed, secret=_bytes(secret))
    if tls is not None:
        parsed = attrs.evolve(parsed, tls=tls)
    return parsed


def _bytes(secret: bytes | str) -> bytes:
    if isinstance(secret, str):
        return secret.encode("utf-8")
    return secret
