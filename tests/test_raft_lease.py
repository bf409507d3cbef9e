"""Lease reads (doozertw.consensus.lease): one test per rule.

The leader answers reads from its commit index without a heartbeat round
only while a quorum answered a heartbeat it sent less than
``election_ticks - LEASE_MARGIN_TICKS`` ticks ago; it gives the lease up
when it hands leadership over, restarts it when the voters change, and a
voter that just started refuses votes for an election timeout. The
simulated-cluster scenarios that break when these rules do are in
tests/test_sim_lease.py.
"""

import random

import pytest

from doozertw.consensus import messages as msg
from doozertw.consensus.lease import LEASE_CTX_PREFIX, LEASE_MARGIN_TICKS, ReadLease
from doozertw.consensus.log import MemoryStorage
from doozertw.consensus.messages import ConfChange, ConfChangeOp
from doozertw.consensus.raft import RaftNode
from doozertw.consensus.ready import ReadState
from doozertw.consensus.validate import problem

VOTERS = ("n1", "n2", "n3")
ELECTION = 10
LEASE = ELECTION - LEASE_MARGIN_TICKS


def node(nid="n1", **kw):
    kw.setdefault("election_ticks", ELECTION)
    kw.setdefault("lease_reads", True)
    return RaftNode(nid, VOTERS, MemoryStorage(), random.Random(1), **kw)


def drain(n):
    rd = n.ready()
    n.advance(rd)
    return rd


def leader(**kw):
    """n1, leading with its no-op committed; its first lease round unsent."""
    n = node(**kw)
    n.campaign()
    n.step(msg.PreVoteResponse("n2", "n1", n.term + 1, True))
    n.step(msg.RequestVoteResponse("n2", "n1", n.term, True))
    assert n.is_leader
    drain(n)
    for peer in ("n2", "n3"):
        n.step(msg.AppendEntriesResponse(peer, "n1", n.term, n.status().last_index))
    drain(n)
    assert n.status().committed_in_term
    return n


def heartbeats(rd):
    return [m for m in rd.messages if isinstance(m, msg.Heartbeat)]


def tick_to_round(n):
    """Tick until the leader sends a lease round; its ctx."""
    for _ in range(ELECTION):
        n.tick()
        sent = heartbeats(drain(n))
        if sent:
            assert sent[0].ctx.startswith(LEASE_CTX_PREFIX)
            return sent[0].ctx
    raise AssertionError("no lease round")


def confirm(n, ctx, by=("n2",)):
    for peer in by:
        n.step(msg.HeartbeatResponse(peer, "n1", n.term, ctx))
    return drain(n)


def leased(**kw):
    n = leader(**kw)
    confirm(n, tick_to_round(n))
    assert n.holds_read_lease
    return n


def test_a_leased_leader_answers_a_read_at_once_from_its_commit_index():
    n = leased()
    n.read_index(b"r1")
    rd = drain(n)
    assert rd.read_states == (ReadState(b"r1", n.status().commit),)
    assert heartbeats(rd) == []


def test_a_follower_read_request_is_answered_at_once_under_the_lease():
    n = leased()
    n.step(msg.ReadIndexRequest("n2", "n1", n.term, b"via-n2"))
    [answer] = [m for m in drain(n).messages if isinstance(m, msg.ReadIndexResponse)]
    assert (answer.dst, answer.ctx, answer.index) == ("n2", b"via-n2", n.status().commit)


def test_without_a_confirmed_round_reads_wait_for_a_heartbeat_quorum():
    n = leader()
    assert not n.holds_read_lease
    n.read_index(b"r1")
    rd = drain(n)
    assert rd.read_states == () and {m.ctx for m in heartbeats(rd)} == {b"r1"}
    rd = confirm(n, b"r1")
    assert rd.read_states == (ReadState(b"r1", n.status().commit),)
    assert n.holds_read_lease  # a confirmed read round renews the lease too


def test_a_lease_round_answers_nobody():
    n = leader()
    rd = confirm(n, tick_to_round(n))
    assert rd.read_states == () and rd.messages == ()


def test_one_voter_ack_of_a_lease_round_is_not_a_quorum_of_five():
    n = RaftNode("n1", ("n1", "n2", "n3", "n4", "n5"), MemoryStorage(), random.Random(1),
                 election_ticks=ELECTION, lease_reads=True)
    n.campaign()
    for peer in ("n2", "n3"):
        n.step(msg.PreVoteResponse(peer, "n1", n.term + 1, True))
    for peer in ("n2", "n3"):
        n.step(msg.RequestVoteResponse(peer, "n1", n.term, True))
    drain(n)
    for peer in ("n2", "n3", "n4", "n5"):
        n.step(msg.AppendEntriesResponse(peer, "n1", n.term, n.status().last_index))
    drain(n)
    ctx = tick_to_round(n)
    confirm(n, ctx, by=("n2",))
    assert not n.holds_read_lease
    confirm(n, ctx, by=("n3",))
    assert n.holds_read_lease


def test_the_lease_runs_from_the_round_sent_not_from_its_answer():
    n = leader(heartbeat_ticks=ELECTION - 1)   # no other round meanwhile
    ctx = tick_to_round(n)
    for _ in range(3):                         # the answers arrive 3 ticks late
        n.tick()
        drain(n)
    confirm(n, ctx)
    for _ in range(LEASE - 4):
        n.tick()
        drain(n)
    assert n.holds_read_lease
    n.tick()
    drain(n)
    assert not n.holds_read_lease


def test_the_lease_expires_without_answers_and_reads_fall_back_to_read_index():
    n = leased()
    for _ in range(LEASE):
        n.tick()
        drain(n)
    assert not n.holds_read_lease and n.is_leader
    n.read_index(b"late")
    rd = drain(n)
    assert rd.read_states == () and b"late" in {m.ctx for m in heartbeats(rd)}


def test_handing_leadership_over_gives_the_lease_up_for_the_term():
    n = leased()
    assert n.transfer_leadership("n2")
    assert any(isinstance(m, msg.TimeoutNow) for m in drain(n).messages)
    assert not n.holds_read_lease
    n.read_index(b"r")
    confirm(n, b"r")                 # confirmed reads are still answered...
    assert not n.holds_read_lease    # ...but renew nothing for this term
    confirm(n, tick_to_round(n))     # lease rounds go on, and renew nothing
    assert not n.holds_read_lease


def test_a_configuration_change_restarts_the_lease():
    n = leased()
    old_round = tick_to_round(n)
    n.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n4"))
    drain(n)
    assert not n.holds_read_lease
    confirm(n, old_round)           # sent to the old voters: does not count
    assert not n.holds_read_lease
    confirm(n, tick_to_round(n))
    assert n.holds_read_lease


def test_a_new_leader_uses_no_lease_before_committing_in_its_term():
    n = node()
    n.campaign()
    n.step(msg.PreVoteResponse("n2", "n1", n.term + 1, True))
    n.step(msg.RequestVoteResponse("n2", "n1", n.term, True))
    drain(n)
    n._lease.until = n._lease.now + LEASE  # even holding a lease
    n.read_index(b"early")
    assert drain(n).read_states == ()
    n.step(msg.AppendEntriesResponse("n2", "n1", n.term, n.status().last_index))
    assert drain(n).read_states == (ReadState(b"early", n.status().commit),)


def test_a_voter_that_just_started_refuses_votes_for_an_election_timeout():
    n = node("n2")
    term = n.term
    n.step(msg.RequestVote("n3", "n2", 9, 50, 8))
    assert (n.term, n.status().vote, drain(n).messages) == (term, None, ())
    for _ in range(ELECTION - 1):
        n.tick()
    n.step(msg.RequestVote("n3", "n2", 9, 50, 8))
    assert n.term == term
    n.tick()
    n.step(msg.RequestVote("n3", "n2", 9, 50, 8))
    assert (n.term, n.status().vote) == (9, "n3")


def test_without_lease_reads_a_voter_that_just_started_votes_at_once():
    n = node("n2", lease_reads=False)
    n.step(msg.RequestVote("n3", "n2", 9, 50, 8))
    assert (n.term, n.status().vote) == (9, "n3")


def test_lease_reads_need_check_quorum_and_a_long_enough_election_timeout():
    with pytest.raises(ValueError):
        node(check_quorum=False)
    with pytest.raises(ValueError):
        node(election_ticks=LEASE_MARGIN_TICKS + 1, heartbeat_ticks=1)
    assert node(election_ticks=LEASE_MARGIN_TICKS + 2).term >= 0


def test_a_read_ctx_shaped_like_a_lease_round_is_refused():
    n = leased()
    with pytest.raises(ValueError, match="^read ctx must not start with the lease prefix$"):
        n.read_index(LEASE_CTX_PREFIX + b"x")
    assert problem(msg.ReadIndexRequest(
        "n2", "n1", 1, LEASE_CTX_PREFIX + b"1")) == "a lease round's ctx"
    assert problem(msg.ReadIndexRequest("n2", "n1", 1, b"n2/1")) is None


def test_read_lease_bookkeeping():
    lease = ReadLease(5)
    assert not lease.valid() and lease.next_ctx() != lease.next_ctx()
    lease.confirmed(0)
    assert lease.valid() and lease.until == 5
    lease.confirmed(-3)
    assert lease.until == 5     # an older round never shortens it
    for _ in range(5):
        lease.tick()
    assert not lease.valid()
    lease.restart()
    lease.confirmed(5)
    assert not lease.valid()    # sent before the restart
    lease.confirmed(6)
    assert lease.valid()
    lease.revoke()
    lease.confirmed(7)
    assert not lease.valid()


def test_a_read_round_confirmed_after_the_lease_lapsed_renews_it_from_its_own_tick():
    n = leased()
    for _ in range(LEASE + 1):     # unanswered lease rounds: it lapses
        n.tick()
        drain(n)
    assert not n.holds_read_lease
    n.read_index(b"late")
    confirm(n, b"late")
    assert n.holds_read_lease        # renewed from the tick the read was sent


def test_a_configuration_change_before_any_confirmed_round_grants_no_lease():
    n = leader()                     # not one tick yet: the lease clock is at 0
    n.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n4"))
    drain(n)
    assert not n.holds_read_lease
    n.read_index(b"r")
    assert drain(n).read_states == ()
