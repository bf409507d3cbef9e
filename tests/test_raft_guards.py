"""Hand-written unit tests for the safety rules whose tests in
tests/test_raft_rules.py do not fail when the rule alone is broken (see
"Safety rules and their guards" in docs/testing.md): learners outside the
commit quorum, and a snapshot received over a longer divergent log (in
memory and in MemoryStorage)."""

import random

from doozertw.consensus import messages as msg
from doozertw.consensus.log import MemoryStorage
from doozertw.consensus.messages import (
    ConfState, Entry, HardState, Snapshot, SnapshotMeta,
)
from doozertw.consensus.raft import RaftNode, bootstrap_entries

VOTERS = ("n1", "n2", "n3")


def drain(node):
    rd = node.ready()
    node.advance(rd)
    return rd


def test_acknowledgements_of_learners_never_commit():
    conf = ConfState(voters=VOTERS, learners=("l1", "l2"))
    n = RaftNode("n1", conf, MemoryStorage(), random.Random(0), pre_vote=False)
    drain(n)
    n.campaign()
    n.step(msg.RequestVoteResponse("n2", "n1", n.term, True))
    assert n.is_leader
    drain(n)  # the leader's own entries are persisted: it counts itself
    before, last = n.status().commit, n.status().last_index
    assert before < last
    for learner in ("l1", "l2"):
        n.step(msg.AppendEntriesResponse(learner, "n1", n.term, last))
    assert n.status().commit == before  # 3 of 5 members, 1 of 3 voters
    n.step(msg.AppendEntriesResponse("n3", "n1", n.term, last))
    assert n.status().commit == last


def longer_divergent_follower():
    """n2 with the founding entries, then entries 4..13 of term 2 (none
    committed), as a deposed leader left them."""
    st = MemoryStorage()
    st.append(bootstrap_entries(ConfState(voters=VOTERS)))
    boot = st.last_index()
    st.append([Entry(2, i, data=b"old") for i in range(boot + 1, boot + 11)])
    st.hard_state = HardState(2, "", boot)
    return RaftNode("n2", VOTERS, st, random.Random(0)), st, boot


def test_snapshot_over_a_longer_divergent_log_replaces_the_whole_log():
    n, st, boot = longer_divergent_follower()
    snap = Snapshot(SnapshotMeta(boot + 4, 3, ConfState(voters=VOTERS)), b"s")
    n.step(msg.InstallSnapshot("n3", "n2", 3, snap))
    s = n.status()
    assert (s.snapshot_index, s.last_index, s.commit) == (boot + 4,) * 3
    assert n.term_at(boot + 5) is None
    rd = drain(n)
    assert rd.snapshot == snap and rd.entries == ()
    st.save(rd)
    assert st.snapshot == snap and st.entries == [] and st.last_index() == boot + 4


def test_memory_storage_drops_every_entry_on_a_received_snapshot():
    st = MemoryStorage()
    st.append([Entry(1, i) for i in range(1, 11)])
    st.apply_snapshot(Snapshot(SnapshotMeta(4, 2)))  # inside the log
    assert st.entries == [] and st.last_index() == 4
    st.append([Entry(2, 5)])
    st.apply_snapshot(Snapshot(SnapshotMeta(3, 2)))  # older: ignored
    assert st.snapshot.index == 4 and [e.index for e in st.entries] == [5]
