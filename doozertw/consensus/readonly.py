"""ReadIndex bookkeeping on the leader (Raft dissertation §6.4).

A read request records the commit index when it arrived; it may be answered
once a quorum of voters has acknowledged a heartbeat carrying its ``ctx``
(or the ctx of a later request: heartbeats are answered in order of
leadership, so a quorum for a later request confirms earlier ones too).
"""

from __future__ import annotations

import attrs


@attrs.define
class PendingRead:
    ctx: bytes
    index: int
    requester: str          # "" for a lease round (nobody to answer)
    sent: int = 0           # the lease clock when its heartbeat went out
    acks: set[str] = attrs.field(factory=set)


class ReadOnly:
    """Pending ReadIndex requests of one leader term, oldest first."""

    def __init__(self) -> None:
        self.pending: dict[bytes, PendingRead] = {}
        self.queue: list[bytes] = []

    def add(self, ctx: bytes, index: int, requester: str, sent: int) -> None:
        if ctx not in self.pending:
            self.pending[ctx] = PendingRead(ctx, index, requester, sent)
            self.queue.append(ctx)

    def ack(self, ctx: bytes, voter: str) -> set[str] | None:
        """Record ``voter``'s ack; returns the ack set or None if unknown."""
        read = self.pending.get(ctx)
        if read is None:
            return None
        read.acks.add(voter)
        return read.acks

    def release_through(self, ctx: bytes) -> list[PendingRead]:
        """Remove and return every request up to and including ``ctx``."""
        if ctx not in self.pending:
            return []
        pos = self.queue.index(ctx) + 1
        released = [self.pending.pop(c) for c in self.queue[:pos]]
        del self.queue[:pos]
        return released

    def last_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""

    def __len__(self) -> int:
        return len(self.queue)
