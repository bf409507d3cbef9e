"""Settings of the web port's defences against hostile clients (pure: attrs only).

- ``hosts``: extra names a request's ``Host`` header may carry, besides the
  defaults (the address the connection arrived at, ``localhost``,
  ``127.0.0.1`` and ``[::1]``, each with the port it arrived at). ``NAME``
  allows that name with any port, ``NAME:PORT`` only with that port; ``*``
  turns the check off (unsafe: DNS rebinding lets any web page a local
  browser visits read and write the store).
- ``protect_metrics``: ``/metrics`` and ``/health`` need the read secret.
- ``header_timeout``: seconds a client may take to send a request's line
  and headers, counted from its first byte (slowloris).
- ``idle_timeout``: seconds a connection may sit between requests
  (twisted.web's ``HTTPFactory`` timeout; reset by every byte received).
- ``max_connections`` / ``max_connections_per_source``: open web
  connections (websockets and streamed watches included) per node and per
  client IP address; one more is answered 503 and closed.
- ``access_log``: log one line per HTTP request (twisted.web's combined
  log format, into the node's log). Off by default: on the hot path it
  costs more than the rest of the web front end's work for a request.

A request body must arrive within ``Limits.request_send_timeout`` seconds of its
headers and be at most ``2 * Limits.max_value + 8 KiB`` bytes (413).
"""

import attrs

ANY_HOST = "*"


class WebOptionError(ValueError):
    """A web option has a value that cannot be used."""


def parse_hosts(value):
    """A tuple of lower-case Host names from a list or a comma-separated string.

    Raises WebOptionError for a name with spaces, slashes or an empty port.
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        for part in str(item).split(","):
            name = part.strip().lower()
            if not name:
                continue
            if any(c.isspace() or c in "/@?#" for c in name) or name.endswith(":"):
                raise WebOptionError(f"web host {part.strip()!r}: expected NAME or NAME:PORT")
            names.append(name)
    return tuple(dict.fromkeys(names))


def _positive(instance, attribute, value):
    if value is None or value <= 0:
        raise WebOptionError(f"{attribute.name} must be positive")


@attrs.frozen
class WebOptions:
    hosts: tuple = attrs.field(default=(), converter=parse_hosts)
    protect_metrics: bool = False
    header_timeout: float = attrs.field(default=10.0, validator=_positive)
    idle_timeout: float = attrs.field(default=60.0, validator=_positive)
    max_connections: int = attrs.field(default=512, validator=_positive)
    max_connections_per_source: int = attrs.field(default=64, validator=_positive)
    access_log: bool = False

    @property
    def any_host(self):
        """True when the Host check is off (``*``)."""
        return ANY_HOST in self.hosts


TUNABLES = ("header_timeout", "idle_timeout", "max_connections", "max_connections_per_source")
"""WebOptions fields the config file sets under ``web_limits``."""
