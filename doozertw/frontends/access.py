"""Secrets and per-connection rights, as doozerd has them.

With no secret configured every connection may read and write. Once a
read-write or read-only secret is configured a connection may do nothing
but ACCESS until it presents one: the read-write secret grants reads and
writes, the read-only secret grants reads. (Configuring only a read-only
secret therefore makes the store read-only to clients.) Secrets are
compared in constant time.
"""

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


def _matches(secret, candidate):
    return bool(secret) and hmac.compare_digest(secret, candidate)


class Access:
    """The rights of one connection."""

    def __init__(self, secrets):
        self._secrets = secrets
        self.can_read = self.can_write = not secrets.enabled

    def grant(self, candidate):
        """Present a secret; True if it matched either one (rights only grow)."""
        if isinstance(candidate, str):
            candidate = candidate.encode("utf-8")
        rw = _matches(self._secrets.rw, candidate)
        ro = _matches(self._secrets.ro, candidate)
        if rw:
            self.can_read = self.can_write = True
        elif ro:
            self.can_read = True
        return rw or ro

    def require_read(self):
        if not self.can_read:
            raise DoozerError(ErrCode.OTHER, PERMISSION_DENIED)

    def require_write(self):
        if not self.can_write:
            raise DoozerError(ErrCode.OTHER, PERMISSION_DENIED)
