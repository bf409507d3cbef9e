"""RaftNode's driver-facing API: batching, status, transport feedback,
the Ready/advance contract."""

import random

import pytest

from doozertw.consensus import messages as msg
from doozertw.consensus.log import MemoryStorage
from doozertw.consensus.messages import Snapshot, SnapshotMeta
from doozertw.consensus.progress import ProgressState
from doozertw.consensus.raft import RaftNode
from doozertw.consensus.ready import NotLeader, Role, SoftState

VOTERS = ("n1", "n2", "n3")


def leader_node(**kw):
    n = RaftNode("n1", VOTERS, MemoryStorage(), random.Random(1), **kw)
    n.campaign()
    n.step(msg.PreVoteResponse("n2", "n1", n.term + 1, True))
    n.step(msg.RequestVoteResponse("n2", "n1", n.term, True))
    assert n.is_leader
    n.advance(n.ready())
    for peer in ("n2", "n3"):
        n.step(msg.AppendEntriesResponse(peer, "n1", n.term, n.log.last_index()))
    n.advance(n.ready())
    return n


def appends_to(rd, peer):
    return [m for m in rd.messages
            if isinstance(m, msg.AppendEntries) and m.dst == peer]


def test_propose_batch_appends_all_and_replicates_them_together():
    n = leader_node()
    first = n.log.last_index() + 1
    result = n.propose_batch([b"a", b"b", b"c"])
    assert result == [(first + i, n.term) for i in range(3)]
    rd = n.ready()
    [m] = appends_to(rd, "n2")
    assert [e.data for e in m.entries] == [b"a", b"b", b"c"]
    assert [e.data for e in rd.entries] == [b"a", b"b", b"c"]
    assert n.propose_batch([]) == []


def test_propose_batch_on_follower_raises_not_leader():
    n = RaftNode("n2", VOTERS, MemoryStorage(), random.Random(1))
    with pytest.raises(NotLeader):
        n.propose_batch([b"x"])


def test_status_reports_role_indexes_and_progress():
    n = leader_node()
    st = n.status()
    assert (st.id, st.role, st.leader, st.term) == ("n1", Role.LEADER, "n1", n.term)
    assert st.commit == st.last_index == n.log.last_index()
    assert set(st.progress) == set(VOTERS)
    assert st.progress["n2"].state == "replicate"
    follower = RaftNode("n2", VOTERS, MemoryStorage(), random.Random(1))
    assert follower.status().progress == {}


def test_report_unreachable_moves_replicating_peer_to_probe():
    n = leader_node()
    n.report_unreachable("n2")
    assert n.progress["n2"].state == ProgressState.PROBE
    n.report_unreachable("n9")  # unknown peers are ignored


def test_report_snapshot_failure_makes_leader_resend():
    n = leader_node()
    pr = n.progress["n3"]
    pr.become_snapshot(2)
    n.report_snapshot("n3", ok=False)
    assert pr.state == ProgressState.PROBE and not pr.is_paused()
    pr.become_snapshot(2)
    n.report_snapshot("n3", ok=True)
    assert pr.state == ProgressState.PROBE and pr.next >= 3


def test_lost_snapshot_times_out_back_to_probe():
    n = leader_node()
    pr = n.progress["n3"]
    pr.become_snapshot(2)
    for _ in range(n.election_ticks + 1):
        n.tick()
        n.step(msg.HeartbeatResponse("n2", "n1", n.term))
    assert pr.state != ProgressState.SNAPSHOT


def test_ready_reports_soft_state_and_hard_state_only_on_change():
    n = RaftNode("n1", VOTERS, MemoryStorage(), random.Random(1))
    rd = n.ready()
    assert rd.hard_state.term == 1 and rd.soft_state is None
    n.advance(rd)
    assert not n.has_ready() and not n.ready()
    n.step(msg.Heartbeat("n2", "n1", 2, 0))
    rd = n.ready()
    assert rd.soft_state == SoftState("n2", Role.FOLLOWER)
    assert rd.hard_state.term == 2
    n.advance(rd)
    n.step(msg.Heartbeat("n2", "n1", 2, 0))
    rd = n.ready()
    assert rd.soft_state is None and rd.hard_state is None and rd.messages


def test_ready_surfaces_received_snapshot_until_advanced():
    n = RaftNode("n2", VOTERS, MemoryStorage(), random.Random(1))
    n.advance(n.ready())
    snap = Snapshot(SnapshotMeta(50, 3, msg.ConfState(VOTERS + ("n4",))), b"S")
    n.step(msg.InstallSnapshot("n1", "n2", 3, snap))
    rd = n.ready()
    assert rd.snapshot == snap and rd.committed_entries == ()
    assert rd.hard_state.commit == 50 and n.conf.voters == set(VOTERS) | {"n4"}
    st = MemoryStorage()
    st.save(rd)
    assert st.snapshot == snap and st.last_index() == 50
    n.advance(rd)
    assert n.log.applied == 50 and n.ready().snapshot is None


def test_single_node_cluster_elects_itself_and_commits_alone():
    n = RaftNode("solo", ["solo"], MemoryStorage(), random.Random(3))
    for _ in range(2 * n.election_ticks):
        n.tick()
    assert n.is_leader
    idx, _ = n.propose(b"x")
    assert n.log.committed < idx  # not before its own fsync
    n.advance(n.ready())
    assert n.log.committed == idx
    n.read_index(b"r")
    assert n.ready().read_states[0].index == idx


def test_constructor_validates_timing_options():
    with pytest.raises(ValueError):
        RaftNode("n1", VOTERS, MemoryStorage(), random.Random(1),
                 election_ticks=3, heartbeat_ticks=3)
