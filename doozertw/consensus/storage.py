"""The storage interface the Raft core is handed (as etcd's raft has
``Storage``): what the driver has made durable.

The core reads it once, when a RaftNode is built (a restarted node starts
from its hard state, snapshot and entries), and tells the driver what to
add through each Ready; the driver calls ``save(ready)`` before sending the
messages that depend on it and ``compact(snapshot)`` after
``RaftNode.compact``. ``MemoryStorage`` (doozertw.consensus.log) keeps it
in memory; ``DiskStorage`` (doozertw.persist) in a data directory, durable
when each call returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from doozertw.consensus.messages import Entry, HardState, Snapshot

if TYPE_CHECKING:
    from doozertw.consensus.ready import Ready


class Storage(Protocol):
    hard_state: HardState
    """Term, vote and commit index, as last saved."""
    snapshot: Snapshot
    """The latest snapshot (index 0: none)."""
    entries: list[Entry]
    """The saved entries after the snapshot, in index order."""

    def last_index(self) -> int:
        """Index of the last saved entry (the snapshot's if none)."""

    def save(self, ready: Ready) -> None:
        """Make ``ready``'s snapshot, entries and hard state durable. A
        snapshot not older than the saved one replaces the whole saved log: no
        entry saved before it remains, not even one after its index (the
        node's own log was divergent there). Entries replace any saved
        suffix they overlap."""

    def compact(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` and drop the saved entries it covers."""


__all__ = ["Storage"]
