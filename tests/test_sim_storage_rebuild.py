"""A node's log rebuilt from its storage equals the log it had, after every
kind of Ready, for MemoryStorage and for DiskStorage.

A follower RaftNode is driven through each kind of Ready (founding
entries, a vote, new entries, a commit-only hard state, the truncation of
a conflicting suffix, a snapshot received over a longer divergent log,
entries after it, a local compaction); after each one the storage it
saved to is opened afresh (for DiskStorage: closed and opened again on the
same files, or the files after a power cut) and must hold exactly what the
Readys asked for (an independent model, simdisk.DurableModel), and a
RaftNode built from it must have the live node's log, term, vote and
commit index. The one thing a power cut may take is a commit-only change
(written without fsync): the commit index may then go back, never beyond
what the entries and snapshot show.
"""

import random

import pytest

from doozertw.consensus import messages as msg
from doozertw.consensus.log import MemoryStorage
from doozertw.consensus.messages import ConfState, Entry, Snapshot, SnapshotMeta
from doozertw.consensus.raft import RaftNode
from doozertw.persist.fs import LazyFileSystem
from doozertw.persist.meta import FORMAT_VERSION, DataDirMeta
from doozertw.persist.storage import DiskStorage
from doozertw.testing.simdisk import DurableModel

VOTERS = ("n1", "n2", "n3")
META = DataDirMeta(FORMAT_VERSION, "clu", "n2", "m-1")


class MemoryBox:
    """A MemoryStorage; 'reopening' it hands the same object back (it is
    what a restarted node is built from)."""

    power_cut = False

    def __init__(self):
        self.storage = MemoryStorage()

    def reopen(self):
        return self.storage


class DiskBox:
    """A DiskStorage on a LazyFileSystem, closed and opened again on the
    same files (after a power cut when ``power_cut``)."""

    def __init__(self, power_cut=False):
        self.fs = LazyFileSystem()
        self.power_cut = power_cut
        self.storage = DiskStorage.create(self.fs, "/data", META,
                                          segment_size=512)

    def reopen(self):
        if self.power_cut:
            self.fs.crash()
        else:
            self.storage.close()
        self.storage = DiskStorage.open(self.fs, "/data", "clu", "n2",
                                        segment_size=512)
        return self.storage


@pytest.fixture(params=["memory", "disk", "disk-power-cut"])
def box(request):
    if request.param == "memory":
        return MemoryBox()
    return DiskBox(power_cut=request.param == "disk-power-cut")


class Follower:
    """Node n2 and its storage, driven one Ready at a time; ``kinds``
    records what each Ready carried."""

    def __init__(self, box):
        self.box = box
        self.model = DurableModel(box.storage)
        self.node = RaftNode("n2", VOTERS, box.storage, random.Random(0))
        self.kinds = set()

    def step(self, m):
        self.node.step(m)
        return self.handle()

    def handle(self):
        rd = self.node.ready()
        self._classify(rd)
        self.box.storage.save(rd)
        self.model.save(rd)
        self.node.advance(rd)
        assert not self.node.has_ready()
        self.check_rebuild()
        return rd

    def compact(self, index, data):
        snap = self.node.compact(index, data)
        self.box.storage.compact(snap)
        self.model.compact(snap)
        self.kinds.add("compaction")
        self.check_rebuild()

    def _classify(self, rd):
        before = self.model.entries[-1].index if self.model.entries else 0
        if rd.snapshot is not None:
            self.kinds.add("snapshot")
        if rd.entries:
            self.kinds.add("truncation" if rd.entries[0].index <= before
                           else "entries")
        if rd.hard_state is not None and not rd.entries:
            self.kinds.add("hard state")

    def check_rebuild(self):
        st = self.box.reopen()
        hs, snap, entries = self.model.view()
        assert (st.snapshot, list(st.entries)) == (snap, entries)
        assert (st.hard_state.term, st.hard_state.vote) == (hs.term, hs.vote)
        if self.box.power_cut:
            assert st.hard_state.commit <= hs.commit
        else:
            assert st.hard_state.commit == hs.commit
        again = RaftNode("n2", VOTERS, st, random.Random(1))
        assert log_of(again, commit=not self.box.power_cut) == \
            log_of(self.node, commit=not self.box.power_cut)


def log_of(node, commit=True):
    """A node's log and hard state through its public API."""
    s = node.status()
    terms = [node.term_at(i) for i in range(s.snapshot_index, s.last_index + 1)]
    return (s.term, s.vote, s.commit if commit else None, s.snapshot_index,
            s.last_index, terms, node.conf)


def entries(term, first, count):
    return [Entry(term, i, data=b"%d@%d" % (i, term))
            for i in range(first, first + count)]


def snapshot(index, term, data=b"app"):
    return Snapshot(SnapshotMeta(index, term, ConfState(voters=VOTERS)), data)


def test_log_rebuilt_after_every_kind_of_ready(box):
    f = Follower(box)
    boot = f.handle().entries[-1].index  # founding entries and term 1
    f.step(msg.RequestVote("n1", "n2", 2, boot, 1))  # a vote only
    # leader n1 (term 2): entries boot+1.., committed up to boot+2
    f.step(msg.AppendEntries("n1", "n2", 2, boot, 1, boot,
                             entries(2, boot + 1, 12)))
    f.step(msg.Heartbeat("n1", "n2", 2, boot + 2))  # commit only
    # leader n3 (term 3) replaces the uncommitted suffix from boot+4 on
    f.step(msg.AppendEntries("n3", "n2", 3, boot + 3, 2, boot + 2,
                             entries(3, boot + 4, 2)))
    assert f.node.status().last_index == boot + 5
    # n1 again (term 4) wrote a long log n2 only partly has; it sends a
    # snapshot at boot+8, where n2 holds a different entry: n2's log must
    # become the snapshot alone
    f.step(msg.AppendEntries("n1", "n2", 4, boot + 3, 2, boot + 3,
                             entries(4, boot + 4, 9)))
    f.step(msg.AppendEntries("n3", "n2", 5, boot + 5, 3, boot + 3, []))
    assert f.node.term_at(boot + 8) == 4 and f.node.status().last_index == boot + 12
    f.step(msg.InstallSnapshot("n3", "n2", 5, snapshot(boot + 8, 5)))
    assert f.node.status().last_index == boot + 8
    f.step(msg.AppendEntries("n3", "n2", 5, boot + 8, 5, boot + 12,
                             entries(5, boot + 9, 6)))
    f.compact(boot + 11, b"state")
    f.step(msg.AppendEntries("n3", "n2", 5, boot + 14, 5, boot + 16,
                             entries(5, boot + 15, 3)))
    assert f.node.status().snapshot_index == boot + 11
    assert f.kinds == {"entries", "hard state", "truncation", "snapshot",
                       "compaction"}


def test_a_snapshot_over_a_longer_divergent_log_leaves_no_entry_behind(box):
    f = Follower(box)
    boot = f.handle().entries[-1].index
    f.step(msg.AppendEntries("n1", "n2", 2, boot, 1, boot, entries(2, boot + 1, 10)))
    rd = f.step(msg.InstallSnapshot("n3", "n2", 3, snapshot(boot + 4, 3)))
    assert rd.snapshot is not None
    st = box.reopen()
    assert st.snapshot.index == boot + 4 and list(st.entries) == []
    assert st.last_index() == boot + 4
