"""The text protocol's lease and transaction verbs (a mixin of TextVerbs).

``lease grant|keepalive|revoke`` and a ``txn`` block are writes: they need
the read-write right and count as this connection's writes in flight (a
later read waits for them). ``lease ttl`` and ``lease list`` are reads.
Lease times go out in whole seconds, rounded up (0 only once expired).
"""

import math

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.interface import SetFile
from doozertw.frontends.text.framing import CRLF, parse_number, words
from doozertw.frontends.text.replies import usage_of

LEASE_USAGE = {
    b"grant": "lease grant TTL [ID]",
    b"keepalive": "lease keepalive ID",
    b"revoke": "lease revoke ID",
    b"ttl": "lease ttl ID",
    b"list": "lease list",
}
LEASE_WRITES = (b"grant", b"keepalive", b"revoke")


def seconds(remaining):
    """Seconds left as a whole number, rounded up, never negative."""
    return max(0, math.ceil(remaining))


def lease_line(info):
    """``<id> <ttl> <remaining>`` CRLF: one lease of a ``lease list`` reply."""
    return b"%d %d %d\r\n" % (info.id, info.ttl, seconds(info.remaining))


def txn_reply(result, ops):
    """``OK TXN <true|false> <rev> <n>`` then one ``<rev> <set|del> <path>``
    line per operation that ran."""
    lines = [b"%d %s %s\r\n" % (rev, b"set" if isinstance(op, SetFile) else b"del",
                                op.path.encode("ascii"))
             for rev, op in zip(result.revs, ops)]
    head = b"OK TXN %s %d %d\r\n" % (b"true" if result.succeeded else b"false",
                                     result.rev, len(lines))
    return head + b"".join(lines)


class LeaseVerbs:
    """``lease ...`` and ``txn`` for TextVerbs; uses its connection state."""

    def cmd_lease(self, line, literal, reply):
        args = words(line)[1:]
        sub = args[0].lower() if args else b""
        usage = LEASE_USAGE.get(sub)
        if usage is None:
            raise DoozerError(ErrCode.MISSING_ARG if not args else ErrCode.OTHER,
                              "usage: lease grant|keepalive|revoke|ttl|list ...")
        least, most = {b"grant": (1, 2), b"list": (0, 0)}.get(sub, (1, 1))
        rest = args[1:]
        if len(rest) < least:
            raise DoozerError(ErrCode.MISSING_ARG, "usage: " + usage)
        if len(rest) > most:
            raise DoozerError(ErrCode.OTHER, "too many arguments; usage: " + usage)
        if sub in LEASE_WRITES:
            self.access.require_write()
        return getattr(self, "_lease_" + sub.decode("ascii"))(*rest)

    def _lease_id(self, word):
        return parse_number(word, "lease id", 1)

    def _lease_grant(self, ttl, lease=None):
        ttl = parse_number(ttl, "ttl", 1)
        lease = parse_number(lease, "lease id", 1) or 0
        if ttl > self.limits.max_lease_ttl:
            raise DoozerError(ErrCode.RANGE, f"ttl over max_lease_ttl {self.limits.max_lease_ttl}")
        d = self._writing(self.node.grant_lease(ttl, lease))
        return d.addCallback(lambda info: b"OK LEASE %d %d\r\n" % (info.id, info.ttl))

    def _lease_keepalive(self, lease):
        d = self._writing(self.node.keepalive(self._lease_id(lease)))
        return d.addCallback(
            lambda info: b"OK LEASE %d %d\r\n" % (info.id, seconds(info.remaining)))

    def _lease_revoke(self, lease):
        d = self._writing(self.node.revoke_lease(self._lease_id(lease)))
        return d.addCallback(lambda rev: b"OK REV %d\r\n" % rev)

    def _lease_ttl(self, lease):
        d = self._after_own_writes(self.node.lease_info, self._lease_id(lease))

        def render(info):
            paths = [p.encode("ascii") + CRLF for p in info.paths]
            return b"OK TTL %d %d %d %d\r\n" % (
                info.id, info.ttl, seconds(info.remaining), len(paths)) + b"".join(paths)

        return d.addCallback(render)

    def _lease_list(self):
        d = self._after_own_writes(self.node.leases)
        return d.addCallback(lambda infos: b"OK LEASES %d\r\n" % len(infos)
                             + b"".join(lease_line(i) for i in infos))

    # -- transactions --------------------------------------------------------------------

    def run_txn(self, block):
        """Answer a complete ``txn`` block (a TxnBlock): its reply as a Deferred."""
        self.access.require_write()
        compares, success, failure = block.transaction()
        d = self._writing(self.node.txn(compares, success, failure))
        return d.addCallback(lambda result: txn_reply(
            result, success if result.succeeded else failure))

    def cmd_end(self, line, literal, reply):
        raise DoozerError(ErrCode.OTHER, "end without txn")

    def cmd_txn_line(self, line, literal, reply):
        """``if``/``then``/``else`` outside a block."""
        raise DoozerError(ErrCode.OTHER, "%s outside a txn block" % usage_of(line))
