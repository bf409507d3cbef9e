"""Doozer URIs: ``doozer:?ca=host:port&ca=host:port&cn=name&sk=secret``.

``ca`` (repeatable) is an address to try, ``cn`` the cluster name, ``sk``
a secret the client presents with ACCESS on every connection. This is the
Go client's format; like it, a URI without the ``doozer:?`` prefix or
without any address is invalid (there is no DzNS boot lookup here).
"""

import urllib.parse

import attrs

PREFIX = "doozer:?"
DEFAULT_PORT = 8046
DEFAULT_URI = "doozer:?ca=127.0.0.1:8046"


class InvalidURI(ValueError):
    """Not a doozer URI, or one naming no address."""


@attrs.frozen
class Address:
    host: str
    port: int

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@attrs.frozen
class DoozerURI:
    addresses: tuple
    cluster: str | None = None
    secret: bytes | None = None


def parse_address(text, default_port=DEFAULT_PORT):
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


def parse_uri(uri):
    """Parse a doozer URI; raises InvalidURI."""
    if not uri.startswith(PREFIX):
        raise InvalidURI("invalid uri")
    query = urllib.parse.parse_qs(uri[len(PREFIX):], keep_blank_values=True)
    addresses = tuple(parse_address(a) for a in query.get("ca", ()) if a)
    if not addresses:
        raise InvalidURI("invalid uri")
    cluster = query.get("cn", [None])[0]
    secret = query.get("sk", [None])[0]
    return DoozerURI(addresses, cluster, secret.encode("utf-8") if secret is not None else None)


def make_uri(addresses, cluster=None, secret=None):
    """The URI naming ``addresses`` (and a cluster name and secret)."""
    pairs = [("ca", str(parse_address(a))) for a in addresses]
    if cluster:
        pairs.append(("cn", cluster))
    if secret:
        pairs.append(("sk", secret.decode("utf-8") if isinstance(secret, bytes) else secret))
    return PREFIX + urllib.parse.urlencode(pairs, safe=":[]")


def resolve(target, secret=None):
    """A DoozerURI from a URI string, one address, or a list of addresses."""
    if isinstance(target, DoozerURI):
        return target
    if isinstance(target, str):
        if target.startswith(PREFIX):
            parsed = parse_uri(target)
            if secret is not None:
                parsed = attrs.evolve(parsed, secret=_bytes(secret))
            return parsed
        target = [target]
    addresses = tuple(parse_address(a) for a in target)
    if not addresses:
        raise InvalidURI("no address given")
    return DoozerURI(addresses, None, _bytes(secret))


def _bytes(secret):
    if isinstance(secret, str):
        return secret.encode("utf-8")
    return secret
