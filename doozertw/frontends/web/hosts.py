"""The Host allowlist of the web port (DNS rebinding protection).

A web page on ``evil.example`` can make its own name resolve to 127.0.0.1
and then read and write a node on the visitor's machine as if it were
same-origin; the only thing such a request cannot fake is its ``Host``
header, which names the attacker's domain. So every request (websocket
upgrades included) must carry an allowed ``Host``:

- the address the connection arrived at (for a port bound to 0.0.0.0 or
  ``::``, whichever local address the client dialled) with its port,
- ``localhost``, ``127.0.0.1`` or ``[::1]`` with that port,
- a name configured with ``--web-host`` / ``web_hosts`` (``NAME`` with any
  port, ``NAME:PORT`` with that port); ``*`` allows any Host.

A Host without a port means port 80 (443 on TLS). A request without Host
is refused too. Refused requests get ``421 Misdirected Request`` with a
plain-text reason.
"""

import ipaddress

from twisted.web import resource

LOOPBACK_NAMES = frozenset({"localhost"})
LOOPBACK_ADDRESSES = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})
MISDIRECTED = 421
_SHOWN = 200


def split_host(text):
    """(name, port or None) of a Host header value; name lower-case, IPs normalised.

    Returns (None, None) when the value is not a host[:port].
    """
    text = text.strip().lower()
    if text.startswith("["):
        name, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None, None
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        name, port = text.split(":")
    elif ":" in text:
        name, port = text, None  # a bare IPv6 address (not valid in Host, but in config)
    else:
        name, port = text, None
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return None, None
    name = name.rstrip(".")
    if not name:
        return None, None
    try:
        name = str(_ip(name))
    except ValueError:
        pass
    return name, (int(port) if port is not None else None)


def _ip(text):
    address = ipaddress.ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


class HostPolicy:
    """Decides which ``Host`` headers a web port accepts (see the module doc)."""

    def __init__(self, extra=()):
        self.any = "*" in extra
        self.extra = [split_host(name) for name in extra if name != "*"]

    def allows(self, host, local, secure=False):
        """True if ``host`` (the header, str or bytes or None) may reach ``local``.

        ``local``: the address the connection arrived at (an IPv4Address or
        IPv6Address; anything without ``port`` accepts the loopback names
        with any port).
        """
        if self.any:
            return True
        if isinstance(host, bytes):
            host = host.decode("latin-1")
        if not host:
            return False
        name, port = split_host(host)
        if name is None:
            return False
        port = port if port is not None else (443 if secure else 80)
        for extra_name, extra_port in self.extra:
            if name == extra_name and extra_port in (None, port):
                return True
        local_port = getattr(local, "port", None)
        if local_port is not None and port != local_port:
            return False
        return name in LOOPBACK_NAMES or self._local_ip(name, local)

    @staticmethod
    def _local_ip(name, local):
        try:
            address = _ip(name)
        except ValueError:
            return False
        if address in LOOPBACK_ADDRESSES:
            return True
        try:
            return address == _ip(getattr(local, "host", ""))
        except ValueError:
            return False

    def allows_request(self, request):
        return self.allows(request.getHeader("host"), request.getHost(), request.isSecure())


def refusal_text(host):
    shown = repr(host if host is None else host[:_SHOWN])
    return (f"421 Misdirected Request: Host {shown} is not allowed on this web port "
            "(DNS rebinding protection). Allowed: the address this port listens on, "
            "localhost, 127.0.0.1 and [::1], with its port, and names given with "
            "--web-host / web_hosts.\n")


class HostRefused(resource.Resource):
    """Answers any method with 421 and the reason."""

    isLeaf = True

    def render(self, request):
        request.setResponseCode(MISDIRECTED)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return refusal_text(request.getHeader("host")).encode("utf-8")
