"""Simulated disks and nodes, and the safety Checker, of SimCluster.

A ``SimDisk`` is what a server's writer thread and its disk amount to: the
durable ``MemoryStorage`` plus at most one Ready whose persistence is in
flight (the driver contract of doozertw.consensus.ready: no ``ready()``
before ``advance()``). The write completes when SimCluster says so (after a
seeded delay); a crash either lets the write reach the disk (the process
died, the OS kept what it was given) or drops it (power loss: unsynced data
is gone).

A ``SimNode`` is one server: its disk, its RaftNode while it is up, and the
application state rebuilt on restart from ``storage.snapshot.data`` plus the
committed entries the node re-delivers. ``history`` survives crashes: what
the node ever applied at each index, so a node that applies something else
there after a restart is caught.

The ``Checker`` holds the global views (leaders per term, every persisted
and applied entry, the commit floor of each read) against which SimCluster
checks Raft's safety properties, linearizable reads, and each storage
against a ``DurableModel`` of what it was asked to save, as events happen.
"""

from __future__ import annotations

import struct

from doozertw.consensus.log import MemoryStorage
from doozertw.consensus.messages import EntryKind, Snapshot
from doozertw.consensus.ready import ReadState, Ready, Role


def encode_state(applied):
    """Snapshot data: every applied (index, term, data) of normal entries."""
    parts = [struct.pack(">I", len(applied))]
    for index, term, data in applied:
        parts.append(struct.pack(">QQI", index, term, len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_state(blob):
    if not blob:
        return []
    (count,), pos, out = struct.unpack_from(">I", blob), 4, []
    for _ in range(count):
        index, term, n = struct.unpack_from(">QQI", blob, pos)
        pos += 20
        out.append((index, term, bytes(blob[pos:pos + n])))
        pos += n
    return out


class InvariantViolation(AssertionError):
    """A Raft safety property was broken."""


class Checker:
    """Global views used to check Raft's safety properties."""

    def __init__(self):
        self.leaders = {}          # term -> leader id
        self.entries = {}          # (index, term) -> (kind, data)
        self.prev_terms = {}       # (index, term) -> term at index - 1
        self.committed = {}        # index -> (term, kind, data), applied anywhere
        self.acked = {}            # index -> term, applied by a leader
        self.read_floors = {}      # ctx -> highest commit index at issue time
        self.read_acked = {}       # ctx -> newest acknowledged write at issue
        self.last_acked = None     # (index, data) of the newest acknowledged write
        self.reads_answered = 0
        self.reads_released = 0
        self.saves_checked = 0     # writes after which storage == the live log

    def on_leader(self, node):
        """``node`` leads its current term: no other node may lead that
        term, and its log must hold every entry ever committed."""
        raft = node.raft
        other = self.leaders.setdefault(raft.term, node.id)
        if other != node.id:
            raise InvariantViolation(
                f"election safety: {other} and {node.id} lead term {raft.term}")
        for index, (term, _k, _d) in self.committed.items():
            if index > raft.status().snapshot_index and raft.term_at(index) != term:
                raise InvariantViolation(
                    f"leader completeness: {node.id} (term {raft.term}) lacks "
                    f"committed entry {index}@{term}")

    def on_persist(self, node, entries):
        """``entries`` were just made durable on ``node``: same index and
        term must mean same entry and same predecessor term everywhere."""
        storage = node.storage
        for e in entries:
            if e.index <= storage.snapshot.index:
                continue
            key = (e.index, e.term)
            seen = self.entries.setdefault(key, (e.kind, e.data))
            prev = storage_term(storage, e.index - 1)
            prev_seen = self.prev_terms.setdefault(key, prev)
            if prev is None or prev_seen is None:
                self.prev_terms[key] = prev if prev_seen is None else prev_seen
            elif prev_seen != prev:
                seen = None
            if seen != (e.kind, e.data):
                raise InvariantViolation(
                    f"log matching: {node.id} has {e.index}@{e.term} (after "
                    f"term {prev}) differing from another log ({seen!r}, "
                    f"after term {prev_seen})")

    def on_apply(self, node, entry):
        if entry.index != node.applied_index + 1:
            raise InvariantViolation(
                f"{node.id} applied {entry.index} after {node.applied_index}")
        self.check_committed(node, entry.index, entry.term, entry.kind, entry.data)
        if getattr(node.raft, "role", None) == Role.LEADER:
            self.acked[entry.index] = entry.term
            if entry.kind == EntryKind.NORMAL and entry.data:
                self.last_acked = (entry.index, entry.data)

    def on_restore(self, node, snap):
        """``node``'s application state became snapshot ``snap``'s."""
        state = {index: (term, EntryKind.NORMAL, data)
                 for index, term, data in decode_state(snap.data)}
        for index, (term, kind, data) in state.items():
            self.check_committed(node, index, term, kind, data)
        for index, seen in node.history.items():
            if index > snap.index or not (seen[1] == EntryKind.NORMAL and seen[2]):
                continue
            if state.get(index) != seen:
                raise InvariantViolation(
                    f"state machine safety: {node.id} restored snapshot "
                    f"{snap.index} without what it applied at {index} ({seen!r})")

    def on_read_state(self, node, rs):
        """Linearizable reads: a ReadIndex answer may not precede anything
        committed before the read was issued."""
        floor = self.read_floors.get(rs.ctx)
        if floor is None:
            raise InvariantViolation(f"{node.id} got unknown read {rs.ctx!r}")
        if rs.index < floor:
            raise InvariantViolation(
                f"stale read: {node.id} read {rs.ctx!r} at {rs.index} but "
                f"{floor} was committed when it was issued")
        self.reads_answered += 1

    def on_read_issued(self, ctx: bytes, floor: int) -> None:
        """A client issues read ``ctx`` now; ``floor`` is the highest index
        committed anywhere (every acknowledged write is at or below it)."""
        self.read_floors[ctx] = floor
        self.read_acked[ctx] = self.last_acked

    def on_read_release(self, node: SimNode, rs: ReadState) -> None:
        """Linearizable reads, as the client sees them: ``node`` serves read
        ``rs.ctx`` from its application state now, so that state must
        include everything committed before the read was issued, and hold
        the newest acknowledged write's value at its index."""
        floor = self.read_floors[rs.ctx]
        if node.applied_index < floor:
            raise InvariantViolation(
                f"stale read: {node.id} served {rs.ctx!r} (read index "
                f"{rs.index}) at applied index {node.applied_index}, but "
                f"{floor} was committed when it was issued")
        acked = self.read_acked.get(rs.ctx)
        if acked is not None and applied_value(node, acked[0]) != acked[1]:
            raise InvariantViolation(
                f"stale read: {node.id} served {rs.ctx!r} without the write "
                f"{acked[1]!r} acknowledged at {acked[0]} before it")
        self.reads_released += 1

    def on_saved(self, node: SimNode) -> None:
        """A write of ``node`` completed: its storage must equal the model
        of what its Readys asked for and, if the node has nothing pending,
        the log it holds in memory (same snapshot, entry terms, hard state).
        """
        st, model = node.storage, node.disk.model
        if (st.hard_state, st.snapshot, list(st.entries)) != model.view():
            raise InvariantViolation(
                f"storage of {node.id} differs from its Readys: stored "
                f"{_log_summary(st.snapshot, st.entries)}, expected "
                f"{_log_summary(model.snapshot, model.entries)}")
        raft = node.raft
        if raft is None or node.disk.busy or raft.has_ready():
            return
        s = raft.status()
        live = (s.term, s.vote or "", s.commit, s.snapshot_index, s.last_index,
                [raft.term_at(e.index) for e in st.entries])
        stored = (st.hard_state.term, st.hard_state.vote or "",
                  st.hard_state.commit, st.snapshot.index, st.last_index(),
                  [e.term for e in st.entries])
        if live != stored:
            raise InvariantViolation(
                f"storage of {node.id} differs from its log in memory: "
                f"stored {stored}, in memory {live}")
        self.saves_checked += 1

    def check_committed(self, node, index, term, kind, data):
        value = (term, kind, data)
        seen = self.committed.setdefault(index, value)
        if seen != value:
            raise InvariantViolation(
                f"state machine safety: {node.id} applied {index}@{term} "
                f"{data!r}, another node applied {seen!r}")
        before = node.history.setdefault(index, value)
        if before != value:
            raise InvariantViolation(
                f"state machine safety: {node.id} applied {index}@{term} "
                f"{data!r} after a crash, {before!r} before")

    def check_durable(self, node):
        """A node's durable log up to its durable commit index holds the
        committed entries, and that commit index is within the log."""
        st = node.storage
        commit = st.hard_state.commit
        if commit > st.last_index():
            raise InvariantViolation(
                f"{node.id} durable commit {commit} beyond its durable log "
                f"({st.last_index()})")
        for e in st.entries:
            if e.index > commit:
                break
            seen = self.committed.get(e.index)
            if seen is not None and seen != (e.term, e.kind, e.data):
                raise InvariantViolation(
                    f"{node.id} durably committed {e.index}@{e.term}, but "
                    f"{seen!r} was applied there")


def applied_value(node: SimNode, index: int) -> bytes | None:
    """Data of the normal entry ``node`` applied at ``index``, or None."""
    for i, _term, data in reversed(node.applied):
        if i <= index:
            return data if i == index else None
    return None


def _log_summary(snapshot, entries):
    terms = [(e.index, e.term) for e in entries]
    return f"snapshot {snapshot.index}@{snapshot.term}, entries {terms}"


class DurableModel:
    """What a storage must hold after the Readys and compactions handed to
    it, written independently of the storages under test: a received
    snapshot replaces the whole log; entries replace the suffix they
    overlap; compaction drops the entries a snapshot covers."""

    def __init__(self, storage):
        self.hard_state = storage.hard_state
        self.snapshot = storage.snapshot
        self.entries = list(storage.entries)

    def save(self, ready: Ready) -> None:
        if ready.snapshot is not None and \
                ready.snapshot.index >= self.snapshot.index:
            self.snapshot, self.entries = ready.snapshot, []
        for e in ready.entries:
            if e.index <= self.snapshot.index:
                continue
            self.entries = [x for x in self.entries if x.index < e.index]
            self.entries.append(e)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state

    def compact(self, snapshot: Snapshot) -> None:
        if snapshot.index > self.snapshot.index:
            self.entries = [e for e in self.entries if e.index > snapshot.index]
            self.snapshot = snapshot

    def view(self):
        return self.hard_state, self.snapshot, list(self.entries)


def storage_term(storage, index):
    """Term of the durable entry at ``index``; None if compacted or absent."""
    snap = storage.snapshot
    if index == snap.index:
        return snap.term
    if index < snap.index or index > storage.last_index():
        return None
    return storage.entries[index - snap.index - 1].term


class SimDisk:
    """Durable storage plus at most one Ready being written to it.

    ``begin(ready, held)`` starts a write (``held``: the Ready's messages
    that may go out only once it is durable); ``finish()`` completes it and
    returns ``(ready, held)``; ``crash(lose_unsynced)`` ends it without
    sending anything. ``token`` changes whenever the in-flight write does,
    so a completion scheduled for an older write is recognised as stale.
    ``model`` (a DurableModel) follows the same writes and compactions, for
    the Checker to compare the storage with.
    """

    def __init__(self, storage=None):
        self.storage = storage if storage is not None else MemoryStorage()
        self.model = DurableModel(self.storage)
        self.inflight = None
        self.held = ()
        self.token = 0
        self.writes = 0

    @property
    def busy(self):
        return self.inflight is not None

    def begin(self, ready, held):
        if self.inflight is not None:
            raise AssertionError("driver bug: a second Ready before advance()")
        self.inflight, self.held = ready, tuple(held)
        self.token += 1
        return self.token

    def finish(self):
        ready, held = self.inflight, self.held
        self.storage.save(ready)
        self.model.save(ready)
        self.writes += 1
        self.inflight, self.held = None, ()
        self.token += 1
        return ready, held

    def crash(self, lose_unsynced):
        """The node died with this write in flight: it reaches the disk
        unless ``lose_unsynced`` (power loss). Returns the Ready that was
        made durable, or None."""
        ready = self.inflight
        self.inflight, self.held = None, ()
        self.token += 1
        if ready is None or lose_unsynced:
            return None
        self.storage.save(ready)
        self.model.save(ready)
        return ready

    def compact(self, snapshot):
        """Compaction by the driver (``storage.compact``)."""
        self.storage.compact(snapshot)
        self.model.compact(snapshot)


class SimNode:
    """One simulated server: a disk, its RaftNode when up, and the
    application state (the list of applied normal entries)."""

    def __init__(self, node_id, founding_conf, storage=None):
        self.id = node_id
        self.founding_conf = founding_conf
        self.disk = SimDisk(storage)
        self.raft = None
        self.applied = []
        self.applied_index = 0
        self.read_states = []
        self.pending_reads = []  # ReadStates answered, not yet served
        self.history = {}  # index -> (term, kind, data) ever applied here
        self.starts = 0

    @property
    def storage(self):
        return self.disk.storage

    @storage.setter
    def storage(self, storage):
        self.disk = SimDisk(storage)

    @property
    def up(self):
        return self.raft is not None

    def durable_view(self):
        """(hard state, snapshot, entries) as a restart would find them."""
        st = self.storage
        return st.hard_state, st.snapshot, list(st.entries)
