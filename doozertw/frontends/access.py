"""Secrets and per-connection rights, as doozerd has them.

With no secret configured every connection may read and write. Once a
read-write or read-only secret is configured a connection may do nothing
but ACCESS until it presents one: the read-write secret grants reads and
writes, the read-only secret grants reads. (Configuring only a read-only
secret therefore makes the store read-only to clients.) Secrets are
compared in constant time. On a client port with ``--client-ca`` a
verified client certificate stands in for the read-write secret
(``grant_certificate``).

Guessing is throttled per source address (``AccessThrottle``): after
``limits.access_failures`` failed attempts, attempts from that address are
refused without being checked for ``limits.access_lockout`` seconds, the
lockout doubling with each failure after it (up to
``limits.access_lockout_max``). A success forgets the address. The table
holds at most ``THROTTLE_TABLE`` addresses (the least recently failed are
forgotten first).
"""

import collections
import hmac

import attrs

from doozertw.errors import PERMISSION_DENIED, DoozerError, ErrCode


@attrs.frozen
class Secrets:
    rw: bytes | None = None
    ro: bytes | None = None

    @property
    def enabled(self):
        return bool(self.rw) or bool(self.ro)


THROTTLE_TABLE = 4096
THROTTLED = "too many failed ACCESS attempts; retry later"


def _matches(secret, candidate):
    return bool(secret) and hmac.compare_digest(secret, candidate)


class AccessThrottle:
    """Failed ACCESS attempts per source address, and the lockouts they earn.

    ``clock`` has ``seconds()``; ``limits`` a doozertw.limits.Limits. One
    throttle is shared by every connection of a client port.
    """

    def __init__(self, clock, limits, table=THROTTLE_TABLE):
        self._clock = clock
        self._limits = limits
        self._table = table
        self._failures = collections.OrderedDict()   # source -> (count, locked until)

    def __len__(self):
        return len(self._failures)

    def locked(self, source):
        """True while attempts from ``source`` are refused unchecked."""
        entry = self._failures.get(source)
        return entry is not None and self._clock.seconds() < entry[1]

    def failed(self, source):
        """Count a failed attempt; past the threshold, (re)start the lockout."""
        count, _ = self._failures.pop(source, (0, 0.0))
        count += 1
        limits = self._limits
        until = 0.0
        if count >= limits.access_failures:
            delay = limits.access_lockout * 2 ** min(count - limits.access_failures, 32)
            until = self._clock.seconds() + min(delay, limits.access_lockout_max)
        self._failures[source] = (count, until)
        while len(self._failures) > self._table:
            self._failures.popitem(last=False)

    def succeeded(self, source):
        self._failures.pop(source, None)


class Access:
    """The rights of one connection.

    ``throttle`` (an AccessThrottle, or None for no throttling) counts this
    connection's failed attempts under ``source``, its peer's address.
    """

    def __init__(self, secrets, throttle=None, source=None):
        self._secrets = secrets
        self.can_read = self.can_write = not secrets.enabled
        self.throttle = throttle
        self.source = source

    def throttle_by(self, throttle, source):
        """Count failures in ``throttle`` (shared by a port) under ``source``."""
        self.throttle = throttle
        self.source = source

    def grant_certificate(self):
        """The connection presented a client certificate the port verified
        (``--client-ca``): it stands in for the read-write secret."""
        self.can_read = self.can_write = True

    def grant(self, candidate):
        """Present a secret; True if it matched either one (rights only grow).

        Raises DoozerError(OTHER, THROTTLED), without looking at the
        candidate, while this connection's source address is locked out.
        """
        throttle = self.throttle if self._secrets.enabled else None
        if throttle is not None and throttle.locked(self.source):
            raise DoozerError(ErrCode.OTHER, THROTTLED)
        if isinstance(candidate, str):
            candidate = candidate.encode("utf-8")
        rw = _matches(self._secrets.rw, candidate)
        ro = _matches(self._secrets.ro, candidate)
        if rw:
            self.can_read = self.can_write = True
        elif ro:
            self.can_read = True
        if throttle is not None:
            if rw or ro:
                throttle.succeeded(self.source)
            else:
                throttle.failed(self.source)
        return rw or ro

    def require_read(self):
        if not self.can_read:
            raise DoozerError(ErrCode.OTHER, PERMISSION_DENIED)

    def require_write(self):
        if not self.can_write:
            raise DoozerError(ErrCode.OTHER, PERMISSION_DENIED)
