"""The leader's read lease (Raft dissertation §6.4.1), counted in ticks.

With lease reads on, a leader answers a read from its own commit index,
without a heartbeat round, while it holds a lease; otherwise it falls back
to ReadIndex (readonly.py). The lease rests on three promises:

1. A voter that heard from the leader refuses every (pre)vote for an
   election timeout (``election_ticks``) after it last did, and a voter
   that just started refuses them for its first election timeout
   (``RaftNode._in_lease``). So once a quorum has answered a heartbeat the
   leader sent at tick ``s``, no other leader can be elected before each
   of them has counted ``election_ticks`` since it heard that heartbeat.
2. Ticks follow real time on every node: a driver delivers the ticks that
   passed (after a pause, a stall, a slow callback) before any other call
   into the node (``ClusterDriver`` does, when lease reads are on). The
   leader's and a voter's tick grids may be offset by up to a tick each,
   and clock rates may drift: the lease lasts ``election_ticks -
   LEASE_MARGIN_TICKS`` ticks from ``s``, which covers both offsets and a
   drift of up to a tick per election timeout (10 % with the default
   ten ticks; real clocks drift by far less).
3. The leader gives the lease up for the rest of its term once it asks a
   voter to take over (TimeoutNow makes that voter's election bypass the
   voters' refusal), and a configuration change restarts it: only rounds
   sent under the new voters count.

Lease rounds are ReadIndex rounds with no requester (``LEASE_CTX_PREFIX``
contexts, never produced by a driver), started on the heartbeat tick when
no read is pending; a confirmed ReadIndex round renews the lease as well.
"""

from __future__ import annotations

LEASE_MARGIN_TICKS = 3
"""Ticks the lease ends before the voters' refusal does (see above)."""

MIN_LEASE_ELECTION_TICKS = LEASE_MARGIN_TICKS + 2
"""The shortest election timeout that leaves a lease of two ticks."""

LEASE_CTX_PREFIX = b"\x00lease:"
"""Context of a lease round (drivers' read contexts are printable)."""


class ReadLease:
    """One leader term's lease: ``now`` counts the term's ticks; the lease
    holds while ``now < until`` and it was not revoked."""

    def __init__(self, duration: int) -> None:
        self.duration = duration
        self.now = 0
        self.until = 0
        self.revoked = False
        self.floor = 0
        self._seq = 0

    def tick(self) -> None:
        self.now += 1

    def valid(self) -> bool:
        return not self.revoked and self.now < self.until

    def next_ctx(self) -> bytes:
        """A fresh lease-round context."""
        self._seq += 1
        return LEASE_CTX_PREFIX + self._seq.to_bytes(8, "big")

    def confirmed(self, sent: int) -> None:
        """A quorum answered a round sent at tick ``sent``: extend the
        lease to ``sent + duration`` unless that round predates the
        current configuration (``floor``) or the lease was given up."""
        if not self.revoked and sent >= self.floor:
            self.until = max(self.until, sent + self.duration)

    def restart(self) -> None:
        """The voters changed: drop the lease; only rounds sent from now
        on may grant a new one."""
        self.until = 0
        self.floor = self.now + 1

    def revoke(self) -> None:
        """Give the lease up for the rest of the term."""
        self.revoked = True


def is_lease_ctx(ctx: bytes) -> bool:
    return ctx.startswith(LEASE_CTX_PREFIX)


__all__ = ["LEASE_CTX_PREFIX", "LEASE_MARGIN_TICKS", "MIN_LEASE_ELECTION_TICKS",
           "ReadLease", "is_lease_ctx"]
