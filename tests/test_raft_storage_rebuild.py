"""A RaftNode rebuilt from the storage it persisted to matches what the
live node believes is durable, after every kind of Ready: new entries,
hard-state-only changes (term, vote, commit), a received snapshot,
compaction, and the truncation of a conflicting suffix. The last test does
the same after every write of a chaotic simulated run (asynchronous disks,
crashes losing unsynced writes)."""

import random

from doozertw.consensus import messages as msg
from doozertw.consensus.log import MemoryStorage
from doozertw.consensus.messages import (
    ConfState, Entry, HardState, Snapshot, SnapshotMeta,
)
from doozertw.consensus.raft import RaftNode, bootstrap_entries
from doozertw.consensus.ready import Role
from doozertw.testing.simcluster import SimCluster, chaos_step

VOTERS = ("n1", "n2", "n3")
BOOT = len(VOTERS)


def make(nid, storage):
    return RaftNode(nid, VOTERS, storage, random.Random(0))


def rebuild(node, storage):
    return RaftNode(node.id, VOTERS, storage, random.Random(1))


def persisted_view(node):
    """What ``node`` believes is durable: its snapshot, entries up to
    ``stable``, and its hard state (valid when nothing is pending)."""
    log = node._log
    return (log.snapshot, log.entries[:log.stable - log.snapshot.index],
            node.term, node.status().vote)


def assert_rebuilds(node, storage):
    """A node rebuilt from ``storage`` has ``node``'s persisted log, hard
    state and commit index."""
    again = rebuild(node, storage)
    assert persisted_view(again) == persisted_view(node)
    assert again.status().commit == node.status().commit
    assert again.status().last_index == node._log.stable
    assert again.conf == node.conf
    hs = storage.hard_state
    assert (hs.term, hs.vote or None, hs.commit) == \
        (node.term, node.status().vote, node.status().commit)
    return again


def handle(node, storage, app=None):
    """Drive one Ready like a synchronous driver, then check the rebuild."""
    rd = node.ready()
    storage.save(rd)
    node.advance(rd)
    assert not node.has_ready() or node.status().commit > node.status().applied
    assert_rebuilds(node, storage)
    return rd


def leader_with_storage():
    st = MemoryStorage()
    n = make("n1", st)
    handle(n, st)  # the bootstrap entries and term 1
    n.campaign()
    handle(n, st)
    for _ in range(3):
        if n.is_leader:
            break
        for v in ("n2", "n3"):
            if n.role == Role.PRE_CANDIDATE:
                n.step(msg.PreVoteResponse(v, "n1", n.term + 1, True))
            else:
                n.step(msg.RequestVoteResponse(v, "n1", n.term, True))
        handle(n, st)
    assert n.is_leader
    return n, st


def ack(leader, src, index):
    leader.step(msg.AppendEntriesResponse(src, leader.id, leader.term, index))


def test_rebuild_after_bootstrap_and_vote_ready():
    st = MemoryStorage()
    n = make("n2", st)
    rd = handle(n, st)
    assert rd.entries and rd.hard_state.term == 1
    n.step(msg.RequestVote("n1", "n2", 5, BOOT, 1))
    rd = handle(n, st)
    assert rd.hard_state == HardState(5, "n1", BOOT) and not rd.entries
    again = assert_rebuilds(n, st)
    assert again.status().vote == "n1"  # a restarted node never votes twice


def test_rebuild_after_entries_and_commit_readys():
    n, st = leader_with_storage()
    for i in range(4):
        n.propose(b"e%d" % i)
    rd = handle(n, st)
    assert len(rd.entries) == 4 and rd.hard_state is None
    ack(n, "n2", n.status().last_index)
    rd = handle(n, st)  # hard state only: the commit index moved
    assert not rd.entries and rd.hard_state.commit == n.status().last_index
    assert rd.committed_entries


def test_rebuild_after_received_snapshot():
    st = MemoryStorage()
    n = make("n3", st)
    handle(n, st)
    snap = Snapshot(SnapshotMeta(20, 4, ConfState(voters=VOTERS)), b"app")
    n.step(msg.InstallSnapshot("n1", "n3", 4, snap))
    rd = handle(n, st)
    assert rd.snapshot == snap and st.snapshot == snap and st.entries == []
    again = assert_rebuilds(n, st)
    assert again._log.snapshot.data == b"app" and again.status().commit == 20
    # entries after the snapshot, then a rebuild again
    n.step(msg.AppendEntries("n1", "n3", 4, 20, 4, 21,
                             [Entry(4, 21, data=b"a"), Entry(4, 22, data=b"b")]))
    handle(n, st)
    assert assert_rebuilds(n, st).status().last_index == 22


def test_rebuild_after_compaction():
    n, st = leader_with_storage()
    for i in range(6):
        n.propose(b"c%d" % i)
    handle(n, st)
    ack(n, "n2", n.status().last_index)
    handle(n, st)
    st.compact(n.compact(n.status().applied - 2, b"state"))
    again = assert_rebuilds(n, st)
    assert again.status().snapshot_index == n.status().applied - 2
    assert again._log.snapshot.data == b"state"
    n.propose(b"after")
    handle(n, st)  # entries appended after a compaction


def test_rebuild_after_conflicting_suffix_truncation():
    st = MemoryStorage()
    st.append(bootstrap_entries(ConfState(voters=VOTERS)))
    st.append([Entry(2, BOOT + i) for i in (1, 2, 3)])  # uncommitted, term 2
    st.hard_state = HardState(2, "", BOOT)
    n = make("n2", st)
    assert_rebuilds(n, st)
    n.step(msg.AppendEntries("n3", "n2", 3, BOOT + 1, 2, BOOT + 1,
                             [Entry(3, BOOT + 2, data=b"new")]))
    rd = handle(n, st)
    assert rd.entries[0].index == BOOT + 2
    assert [e.term for e in st.entries] == [1] * BOOT + [2, 3]
    assert assert_rebuilds(n, st).status().last_index == BOOT + 2


class _RebuildCheckingCluster(SimCluster):
    """A SimCluster that rebuilds every node from its storage after each
    completed write and compares with the live node's persisted view."""

    def __init__(self, kinds, *args, **kwargs):
        self.kinds = kinds
        self.full_matches = 0
        super().__init__(*args, **kwargs)

    def _complete(self, node):
        before = node.storage.last_index()
        rd = node.disk.inflight
        super()._complete(node)
        self._classify(rd, before)
        if node.raft is not None:
            self._compare(node)

    def _classify(self, rd, before):
        kinds = self.kinds
        kinds["snapshot"] += rd.snapshot is not None
        kinds["entries"] += bool(rd.entries)
        kinds["hard_state_only"] += rd.hard_state is not None and not rd.entries
        kinds["truncation"] += bool(rd.entries) and rd.entries[0].index <= before

    def _compare(self, node):
        live, st = node.raft, node.storage
        if live._log.unstable_snapshot is not None:
            return  # a snapshot received while writing: the next write
        again = RaftNode(node.id, node.founding_conf, st, random.Random(0))
        snap, entries, _t, _v = persisted_view(live)
        assert again._log.snapshot == snap
        # the durable log may still hold a suffix the live node truncated
        # in memory after handing out the write; the next write replaces it
        assert again._log.entries[:len(entries)] == entries
        hs = st.hard_state
        assert (again.term, again.status().vote) == (hs.term, hs.vote or None)
        assert again.status().commit == max(hs.commit, snap.index)
        assert live.term >= hs.term and live.status().commit >= hs.commit
        if not live.has_ready():
            self.full_matches += 1
            assert persisted_view(again) == persisted_view(live)
            assert again.status().commit == live.status().commit
            assert again.conf == live.conf


def test_rebuild_matches_after_every_write_of_chaotic_runs():
    kinds = {"snapshot": 0, "entries": 0, "hard_state_only": 0,
             "truncation": 0}
    compactions = full_matches = 0
    for seed in range(8):
        c = _RebuildCheckingCluster(kinds, 3, seed=seed, loss=0.1, dup=0.05,
                                    max_delay=3, compact_every=4, disk_delay=3)
        rng = random.Random(seed)
        for _ in range(300):
            chaos_step(c, rng, crash_p=0.03, partition_p=0.03, heal_p=0.03,
                       lossy_p=0.5, mass_crash_p=0.005, restart_p=0.05)
            c.tick()
        compactions += sum(n.storage.snapshot.index > 0 for n in c.nodes.values())
        full_matches += c.full_matches
    assert compactions and all(v > 0 for v in kinds.values()), kinds
    assert full_matches > 100
