"""Stateful property test: DiskStorage on a LazyFileSystem stays equal to a
MemoryStorage fed the same Readys, across conflicting suffix overwrites,
received snapshots, compactions, reopens and crashes after acknowledged
saves."""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from doozertw.consensus.log import LogError, MemoryStorage
from doozertw.consensus.messages import (
    ConfState, Entry, HardState, Snapshot, SnapshotMeta,
)
from doozertw.consensus.ready import Ready
from doozertw.persist.fs import LazyFileSystem
from doozertw.persist.meta import FORMAT_VERSION, DataDirMeta
from doozertw.persist.storage import DiskStorage

META = DataDirMeta(FORMAT_VERSION, "clu", "n1", "m-1")
SEG = 256


class DiskMatchesMemory(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.fs = LazyFileSystem()
        self.disk = DiskStorage.create(self.fs, "/d", META, segment_size=SEG)
        self.mem = MemoryStorage()
        self.term = 1

    def _both(self, call):
        try:
            call(self.mem)
        except LogError:
            try:
                call(self.disk)
            except LogError:
                return
            raise AssertionError("disk accepted what memory refused") from None
        call(self.disk)

    @rule(back=st.integers(0, 6), count=st.integers(0, 5),
          bump=st.booleans(), gap=st.booleans(),
          hs=st.none() | st.tuples(st.integers(0, 3), st.sampled_from(
              ["", "n1", "n2"]), st.integers(0, 40)),
          size=st.integers(0, 30))
    def save(self, back, count, bump, gap, hs, size):
        if bump:
            self.term += 1
        first = max(1, self.mem.last_index() + 1 - back + (2 if gap else 0))
        entries = tuple(Entry(self.term, i, data=bytes([i % 256]) * size)
                        for i in range(first, first + count))
        hard = None if hs is None else HardState(self.term + hs[0], hs[1],
                                                 hs[2])
        self._both(lambda s: s.save(Ready(entries=entries, hard_state=hard)))

    @rule(ahead=st.integers(-3, 6), count=st.integers(0, 3),
          data=st.binary(max_size=20))
    def receive_snapshot(self, ahead, count, data):
        self.term += 1
        index = max(0, self.mem.last_index() + ahead)
        snap = Snapshot(SnapshotMeta(index, self.term, ConfState({"n1"})),
                        data)
        entries = tuple(Entry(self.term, i)
                        for i in range(index + 1, index + 1 + count))
        self._both(lambda s: s.save(Ready(snapshot=snap, entries=entries)))

    @rule(frac=st.floats(0, 1), data=st.binary(max_size=20))
    def compact(self, frac, data):
        lo, hi = self.mem.snapshot.index, self.mem.last_index()
        if hi <= lo:
            return
        index = lo + 1 + int(frac * (hi - lo - 1))
        term = self.mem.entries[index - lo - 1].term
        snap = Snapshot(SnapshotMeta(index, term, ConfState({"n1", "n2"})),
                        data)
        self._both(lambda s: s.compact(snap))

    @rule(crash=st.booleans())
    def reopen(self, crash):
        self.disk.close()
        if crash:
            self.fs.crash()
        self.disk = DiskStorage.open(self.fs, "/d", "clu", "n1",
                                     segment_size=SEG)
        if crash and self.disk.hard_state != self.mem.hard_state:
            # a change of the commit index alone is not fsynced: a crash may
            # lose it, never a term or a vote
            kept, meant = self.disk.hard_state, self.mem.hard_state
            assert (kept.term, kept.vote) == (meant.term, meant.vote)
            self.mem.hard_state = kept

    @invariant()
    def same_state(self):
        assert self.disk.hard_state == self.mem.hard_state
        assert self.disk.snapshot == self.mem.snapshot
        assert self.disk.entries == self.mem.entries
        assert self.disk.last_index() == self.mem.last_index()

    def teardown(self):
        self.disk.close()


DiskMatchesMemory.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow])
TestDiskMatchesMemory = DiskMatchesMemory.TestCase
