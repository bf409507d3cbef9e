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
        n.step(msg.AppendEntriesResponse(peer, "n1", n.term, n.status().last_index))
    n.advance(n.ready())
    return n


def appends_to(rd, peer):
    return [m for m in rd.messages
            if isinstance(m, msg.AppendEntries) and m.dst == peer]


def test_propose_batch_appends_all_and_replicates_them_together():
    n = leader_node()
    first = n.status().last_index + 1
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
    assert st.commit == st.last_index == n.status().last_index
    assert set(st.progress) == set(VOTERS)
    assert st.progress["n2"].state == "replicate"
    follower = RaftNode("n2", VOTERS, MemoryStorage(), random.Random(1))
    assert follower.status().progress == {}


def test_report_unreachable_moves_replicating_peer_to_probe():
    n = leader_node()
    n.report_unreachable("n2")
    assert n._progress["n2"].state == ProgressState.PROBE
    n.report_unreachable("n9")  # unknown peers are ignored


def test_report_snapshot_failure_makes_leader_resend():
    n = leader_node()
    pr = n._progress["n3"]
    pr.become_snapshot(2)
    n.report_snapshot("n3", ok=False)
    assert pr.state == ProgressState.PROBE and not pr.is_paused()
    pr.become_snapshot(2)
    n.report_snapshot("n3", ok=True)
    assert pr.state == ProgressState.PROBE and pr.next >= 3


def test_lost_snapshot_times_out_back_to_probe():
    n = leader_node()
    pr = n._progress["n3"]
    pr.become_snapshot(2)
    for _ in range(n._election_ticks + 1):
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
    assert n.status().applied == 50 and n.ready().snapshot is None


def test_single_node_cluster_elects_itself_and_commits_alone():
    n = RaftNode("solo", ["solo"], MemoryStorage(), random.Random(3))
    for _ in range(2 * n._election_ticks):
        n.tick()
    assert n.is_leader
    idx, _ = n.propose(b"x")
    assert n.status().commit < idx  # not before its own fsync
    n.advance(n.ready())
    assert n.status().commit == idx
    n.read_index(b"r")
    assert n.ready().read_states[0].index == idx


def test_constructor_validates_timing_options():
    with pytest.raises(ValueError):
        RaftNode("n1", VOTERS, MemoryStorage(), random.Random(1),
                 election_ticks=3, heartbeat_ticks=3)


def test_status_is_a_frozen_copy_with_commit_and_term_facts():
    n = leader_node()
    st = n.status()
    assert st.committed_in_term and st.is_leader
    assert st.conf.voters == set(VOTERS) and st.vote == "n1"
    assert (st.dropped, st.last_dropped) == (0, None)
    n.propose(b"later")
    assert n.status().last_index == st.last_index + 1  # the copy did not move
    with pytest.raises(AttributeError):
        st.term = 99


def test_new_leader_has_not_committed_in_its_term_until_a_quorum_acks():
    n = RaftNode("n1", VOTERS, MemoryStorage(), random.Random(1))
    n.campaign()
    n.step(msg.PreVoteResponse("n2", "n1", n.term + 1, True))
    n.step(msg.RequestVoteResponse("n2", "n1", n.term, True))
    assert n.is_leader and not n.status().committed_in_term
    n.advance(n.ready())
    n.step(msg.AppendEntriesResponse("n2", "n1", n.term, n.status().last_index))
    assert n.status().committed_in_term


def test_step_returns_and_status_records_what_it_refused():
    n = leader_node()
    assert n.step(msg.HeartbeatResponse("n2", "n1", n.term)) is None
    bad = msg.AppendEntriesResponse("n3", "n1", n.term, n.status().last_index + 5)
    dropped = n.step(bad)
    assert dropped is not None
    assert (dropped.kind, dropped.src) == ("AppendEntriesResponse", "n3")
    assert "does not have" in dropped.reason
    st = n.status()
    assert st.dropped == 1 and st.last_dropped == dropped
    assert n.step(msg.HeartbeatResponse("n2", "n1", n.term)) is None
    assert n.status().dropped == 1


def test_term_at_reports_log_terms_and_none_outside_the_log():
    n = leader_node()
    last = n.status().last_index
    assert n.term_at(0) == 0 and n.term_at(1) == 1
    assert n.term_at(last) == n.term and n.term_at(last + 1) is None
    n.compact(last - 1, b"state")
    assert n.term_at(last - 2) is None and n.term_at(last - 1) is not None


def test_each_role_steps_with_its_own_function():
    """A vote answer matters only to the role that asked for it: a
    pre-candidate ignores RequestVoteResponse, a candidate PreVoteResponse,
    and a follower both."""
    n = RaftNode("n1", ("n1", "n2", "n3", "n4", "n5"), MemoryStorage(),
                 random.Random(1))
    term = n.term
    n.step(msg.RequestVoteResponse("n2", "n1", term, True))
    assert n.role == Role.FOLLOWER
    n.campaign()
    assert n.role == Role.PRE_CANDIDATE
    n.step(msg.RequestVoteResponse("n2", "n1", term, True))
    n.step(msg.RequestVoteResponse("n3", "n1", term, True))
    assert n.role == Role.PRE_CANDIDATE  # real votes do not count here
    n.step(msg.PreVoteResponse("n2", "n1", term + 1, True))
    n.step(msg.PreVoteResponse("n3", "n1", term + 1, True))
    assert n.role == Role.CANDIDATE and n.term == term + 1
    n.step(msg.PreVoteResponse("n4", "n1", term + 1, True))
    n.step(msg.PreVoteResponse("n5", "n1", term + 1, True))
    assert n.role == Role.CANDIDATE  # pre-votes do not count here
    n.step(msg.RequestVoteResponse("n2", "n1", n.term, True))
    n.step(msg.RequestVoteResponse("n3", "n1", n.term, True))
    assert n.role == Role.LEADER


def test_a_new_term_forgets_the_leaders_bookkeeping():
    n = leader_node()
    n.read_index(b"pending")
    assert n.status().progress
    n.step(msg.Heartbeat("n2", "n1", n.term + 1, 0))
    assert n.role == Role.FOLLOWER and n.leader == "n2"
    assert n.status().progress == {}
    n.step(msg.HeartbeatResponse("n3", "n1", n.term, b"pending"))
    assert n.ready().read_states == ()  # the old read is gone with the term


def test_a_commit_completed_by_the_leaders_own_fsync_reaches_the_followers_at_once():
    # one follower acknowledged before the leader's own write finished: the
    # leader's persistence completes the quorum, and the followers must hear
    # of the commit now, not with the next heartbeat (a write forwarded by a
    # follower waits for the follower to apply it)
    n = leader_node()
    [(index, _)] = n.propose_batch([b"x"])
    rd = n.ready()
    n.step(msg.AppendEntriesResponse("n2", "n1", n.term, index))
    assert n.status().commit < index
    n.advance(rd)
    assert n.status().commit == index
    rd = n.ready()
    commits = {m.dst: m.commit for m in rd.messages if isinstance(m, msg.AppendEntries)}
    assert commits == {"n2": index, "n3": index}
