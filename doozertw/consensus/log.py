"""The Raft log: durable storage model and the node's in-memory view.

``MemoryStorage`` is what the application has made durable (hard state,
latest snapshot, entries after it); the application updates it from each
Ready (``storage.save(ready)``) and a restarted node is built from it.

``RaftLog`` is the node's working copy: a snapshot (the compaction point)
followed by entries, plus the commit and applied indexes and the boundary
between entries already persisted (stable) and those still to be handed out
in a Ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from doozertw.consensus.messages import (
    ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta,
)

if TYPE_CHECKING:
    from doozertw.consensus.ready import Ready
    from doozertw.consensus.storage import Storage


class LogError(Exception):
    """An operation would break a log invariant (a bug in the caller)."""


class MemoryStorage:
    """Durable state model: hard state, snapshot, entries after it."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot = Snapshot()
        self.entries: list[Entry] = []

    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.index

    def append(self, entries: Sequence[Entry]) -> None:
        """Persist ``entries``, replacing any stored suffix they overlap."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.snapshot.index:
            entries = [e for e in entries if e.index > self.snapshot.index]
            if not entries:
                return
            first = entries[0].index
        if first > self.last_index() + 1:
            raise LogError(f"gap: storing {first} after {self.last_index()}")
        keep = first - self.snapshot.index - 1
        del self.entries[keep:]
        self.entries.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace everything with ``snapshot`` (a received snapshot)."""
        if snapshot.index < self.snapshot.index:
            return
        self.snapshot = snapshot
        self.entries = []

    def compact(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` and drop stored entries it covers."""
        if snapshot.index <= self.snapshot.index:
            return
        if snapshot.index > self.last_index():
            raise LogError("compacting beyond the stored log")
        drop = snapshot.index - self.snapshot.index
        self.entries = self.entries[drop:]
        self.snapshot = snapshot

    def save(self, ready: Ready) -> None:
        """Make a Ready's snapshot, entries and hard state durable."""
        if ready.snapshot is not None:
            self.apply_snapshot(ready.snapshot)
        self.append(list(ready.entries))
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state


class RaftLog:
    """In-memory log: snapshot point, entries, commit/applied/stable marks."""

    def __init__(self, snapshot: Snapshot | None = None,
                 entries: Sequence[Entry] = (), committed: int = 0) -> None:
        self.snapshot = snapshot or Snapshot()
        self.entries = list(entries)
        self.committed = max(committed, self.snapshot.index)
        self.applied = self.snapshot.index
        self.stable = self.last_index()
        self.unstable_snapshot: Snapshot | None = None
        self.conf_dirty = False
        if self.entries and self.entries[0].index != self.snapshot.index + 1:
            raise LogError("entries do not follow the snapshot")
        if self.committed > self.last_index():
            raise LogError("commit index beyond the log")

    @classmethod
    def from_storage(cls, storage: Storage) -> RaftLog:
        return cls(storage.snapshot, storage.entries,
                   storage.hard_state.commit)

    # -- queries -----------------------------------------------------------

    def first_index(self) -> int:
        return self.snapshot.index + 1

    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``, or None if compacted or absent."""
        if index == self.snapshot.index:
            return self.snapshot.term
        if index < self.snapshot.index or index > self.last_index():
            return None
        return self.entries[index - self.snapshot.index - 1].term

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def slice(self, lo: int, hi: int, max_count: int | None = None,
              max_bytes: int | None = None) -> list[Entry]:
        """Entries with lo <= index < hi, bounded by count and bytes (always
        at least one entry if any is in range). ``lo`` must not be compacted.
        """
        if lo <= self.snapshot.index:
            raise LogError(f"entry {lo} is compacted")
        hi = min(hi, self.last_index() + 1)
        if max_count is not None:
            hi = min(hi, lo + max_count)
        out = self.entries[lo - self.snapshot.index - 1:hi - self.snapshot.index - 1]
        if max_bytes is not None and out:
            total, n = 0, 0
            for e in out:
                total += e.size()
                if n and total > max_bytes:
                    break
                n += 1
            out = out[:n]
        return out

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: is a log ending at (last_index, last_term) at least as
        up to date as ours?"""
        my_term = self.last_term()
        return last_term > my_term or (
            last_term == my_term and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int,
                              term: int) -> tuple[int, int | None]:
        """Largest i <= index whose term is <= ``term`` (or the snapshot)."""
        index = min(index, self.last_index())
        while index > self.snapshot.index:
            t = self.term(index)
            if t is not None and t <= term:
                break
            index -= 1
        return index, self.term(index)

    def unstable_entries(self) -> list[Entry]:
        return self.entries[self.stable - self.snapshot.index:]

    def next_committed(self, max_count: int | None = None) -> list[Entry]:
        """Committed entries not yet applied."""
        lo = max(self.applied + 1, self.first_index())
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1, max_count=max_count)

    # -- mutations ---------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> int:
        """Leader append: entries must directly follow the last index."""
        if entries and entries[0].index != self.last_index() + 1:
            raise LogError("leader append must extend the log")
        self.entries.extend(entries)
        return self.last_index()

    def maybe_append(self, prev_index: int, prev_term: int,
                     entries: Sequence[Entry]) -> int | None:
        """Follower append (§5.3). Returns the index up to which our log now
        matches the leader's, or None if (prev_index, prev_term) does not
        match. Conflicting entries and all that follow them are removed;
        matching entries are kept, so a stale message never truncates."""
        last_new = prev_index + len(entries)
        if prev_index < self.snapshot.index:
            # The snapshot covers only committed entries, which match.
            entries = [e for e in entries if e.index > self.snapshot.index]
        elif not self.matches(prev_index, prev_term):
            return None
        self._merge(entries)
        return last_new

    def _merge(self, entries: Sequence[Entry]) -> None:
        for i, e in enumerate(entries):
            existing = self.term(e.index)
            if existing == e.term:
                continue
            if existing is not None and e.index <= self.committed:
                raise LogError(f"conflict at committed index {e.index}")
            self.truncate_after(e.index - 1)
            self.entries.extend(entries[i:])
            break

    def truncate_after(self, index: int) -> None:
        """Drop entries after ``index`` (never committed ones)."""
        if index < self.committed:
            raise LogError("truncating committed entries")
        if index >= self.last_index():
            return  # nothing after it: the configuration stays as it is
        del self.entries[index - self.snapshot.index:]
        self.stable = min(self.stable, index)
        self.conf_dirty = True

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise LogError(f"commit {index} beyond last {self.last_index()}")
            self.committed = index

    def applied_to(self, index: int) -> None:
        if index > self.committed or index < self.applied:
            raise LogError(f"bad applied index {index}")
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        if self.term(index) == term and index > self.stable:
            self.stable = index

    def compact(self, index: int, data: bytes, conf: ConfState) -> Snapshot:
        """Drop entries up to ``index`` (<= applied), keeping a snapshot."""
        if index <= self.snapshot.index:
            raise LogError(f"index {index} already compacted")
        term = self.term(index)
        if index > self.applied or term is None:
            raise LogError(f"cannot compact unapplied index {index}")
        snap = Snapshot(SnapshotMeta(index, term, conf), data)
        self.entries = self.entries[index - self.snapshot.index:]
        self.snapshot = snap
        return snap

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the log with a received snapshot (§7)."""
        self.snapshot = snapshot
        self.entries = []
        self.committed = snapshot.index
        self.stable = snapshot.index
        self.unstable_snapshot = snapshot

    def conf_at(self, index: int | None = None) -> ConfState:
        """Configuration in force at ``index`` (default: the last entry):
        the snapshot's plus every conf entry up to there (configurations
        take effect when appended, Raft dissertation §4.1)."""
        conf = self.snapshot.meta.conf
        for e in self.entries:
            if index is not None and e.index > index:
                break
            if e.kind == EntryKind.CONF_CHANGE:
                conf = conf.apply(e.conf_change())
        return conf

    def has_conf_change_after(self, index: int) -> bool:
        return any(e.kind == EntryKind.CONF_CHANGE and e.index > index
                   for e in self.entries)

