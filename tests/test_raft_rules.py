"""One test per rule of the Raft paper (Figure 2, §5.4) and of the
extensions doozertw relies on (pre-vote, check-quorum, ReadIndex,
membership, snapshots). Unit tests drive a RaftNode by hand; scenario tests
use the deterministic SimCluster."""

import random

import pytest

from doozertw.consensus import messages as msg
from doozertw.consensus.log import LogError, MemoryStorage
from doozertw.consensus.messages import (
    ConfChange, ConfChangeOp, Entry, HardState,
)
from doozertw.consensus.raft import RaftNode, bootstrap_entries
from doozertw.consensus.ready import (
    early_send_allowed, is_leader_early_message,
    ConfChangeInProgress, InvalidConfChange, NotLeader, ReadState, Role,
)
from doozertw.testing.simcluster import SimCluster
from doozertw.testing.raftkit import drain, make_leader, sent

VOTERS = ("n1", "n2", "n3")
BOOT = len(VOTERS)  # index of the last bootstrap entry


def make(nid="n1", voters=VOTERS, storage=None, seed=0, **kw):
    return RaftNode(nid, voters, storage or MemoryStorage(),
                    random.Random(seed), **kw)


def storage_with(entries, term, voters=VOTERS):
    """Durable state of a founder whose log continues with ``entries``."""
    st = MemoryStorage()
    st.append(bootstrap_entries(msg.ConfState(voters=voters)))
    st.append(entries)
    st.hard_state = HardState(term, "", len(voters))
    return st


def founder_log(term_of_index, voters=VOTERS):
    base = len(voters)
    return [Entry(t, base + i) for i, t in enumerate(term_of_index, start=1)]


def ack(leader, src, index):
    leader.step(msg.AppendEntriesResponse(src, leader.id, leader.term, index))


# -- Rules for Servers: all servers -------------------------------------


def test_all_servers_apply_committed_entries_in_order():
    n = make_leader(make())
    i1, _ = n.propose(b"a")
    i2, _ = n.propose(b"b")
    drain(n)
    assert n.status().commit < i1
    ack(n, "n2", i2)
    rd = drain(n)
    assert [e.index for e in rd.committed_entries] == [i1 - 1, i1, i2]
    assert [e.data for e in rd.committed_entries] == [b"", b"a", b"b"]
    assert n.status().applied == i2
    assert drain(n).committed_entries == ()


def test_all_servers_convert_to_follower_on_higher_term():
    n = make_leader(make())
    term = n.term
    n.step(msg.AppendEntriesResponse("n2", "n1", term + 3, 0))
    assert n.role == Role.FOLLOWER and n.term == term + 3 and n.status().vote is None
    assert drain(n).hard_state.term == term + 3


# -- Followers --------------------------------------------------------------


def test_follower_starts_election_after_randomized_timeout():
    n = make(pre_vote=False, election_ticks=10)
    start = n.term
    assert 10 <= n._randomized_timeout < 20
    for _ in range(n._randomized_timeout - 1):
        n.tick()
    assert n.role == Role.FOLLOWER
    n.tick()
    assert n.role == Role.CANDIDATE and n.term == start + 1


def test_election_timeouts_are_drawn_from_injected_rng():
    seen = {make(seed=s)._randomized_timeout for s in range(50)}
    assert seen <= set(range(10, 20)) and len(seen) > 3
    assert make(seed=7)._randomized_timeout == make(seed=7)._randomized_timeout
    with pytest.raises(ValueError):
        RaftNode("n1", VOTERS, MemoryStorage(), None)


def test_follower_hearing_from_leader_does_not_time_out():
    n = make()
    for _ in range(100):
        n.tick()
        n.step(msg.Heartbeat("n2", "n1", 5, 0))
    assert n.role == Role.FOLLOWER and n.leader == "n2"


def test_learner_and_removed_node_never_campaign():
    n = make("n4", voters=msg.ConfState(VOTERS, ["n4"]))
    for _ in range(100):
        n.tick()
    assert n.role == Role.FOLLOWER and sent(n, msg.PreVote) == []


# -- Candidates ------------------------------------------------------------


def test_candidate_increments_term_votes_for_self_and_requests_votes():
    n = make(pre_vote=False)
    n.campaign()
    assert n.term == 2 and n.status().vote == "n1" and n.role == Role.CANDIDATE
    reqs = sent(n, msg.RequestVote)
    assert sorted(m.dst for m in reqs) == ["n2", "n3"]
    assert all(m.last_index == BOOT and m.last_term == 1 for m in reqs)


def test_candidate_with_majority_becomes_leader():
    n = make(pre_vote=False)
    n.campaign()
    n.step(msg.RequestVoteResponse("n2", "n1", n.term, False))
    assert n.role == Role.CANDIDATE
    n.step(msg.RequestVoteResponse("n3", "n1", n.term, True))
    assert n.is_leader


def test_candidate_with_majority_of_rejections_becomes_follower():
    n = make(pre_vote=False, voters=("n1", "n2", "n3", "n4", "n5"))
    n.campaign()
    for v in ("n2", "n3"):
        n.step(msg.RequestVoteResponse(v, "n1", n.term, False))
    assert n.role == Role.CANDIDATE
    n.step(msg.RequestVoteResponse("n4", "n1", n.term, False))
    assert n.role == Role.FOLLOWER


def test_candidate_steps_down_on_append_from_leader_of_same_term():
    n = make(pre_vote=False)
    n.campaign()
    n.step(msg.AppendEntries("n2", "n1", n.term, BOOT, 1, BOOT))
    assert n.role == Role.FOLLOWER and n.leader == "n2"


def test_candidate_starts_new_election_after_split_vote():
    n = make(pre_vote=False)
    n.campaign()
    term = n.term
    for _ in range(2 * n._election_ticks):
        n.tick()
    assert n.role == Role.CANDIDATE and n.term > term


def test_votes_from_non_voters_do_not_count():
    n = make(pre_vote=False)
    n.campaign()
    n.step(msg.RequestVoteResponse("n9", "n1", n.term, True))
    assert n.role == Role.CANDIDATE


# -- Leaders ----------------------------------------------------------------


def test_leader_appends_noop_of_its_term_on_election():
    n = make_leader(make())
    last = n._log.entries[-1]
    assert (last.index, last.term, last.data) == (BOOT + 1, n.term, b"")


def test_leader_sends_heartbeats_when_idle():
    n = make_leader(make(heartbeat_ticks=2))
    n.tick()
    assert sent(n, msg.Heartbeat) == []
    n.tick()
    assert sorted(m.dst for m in sent(n, msg.Heartbeat)) == ["n2", "n3"]


def test_leader_replicates_proposals_and_commits_on_majority():
    n = make_leader(make())
    ack(n, "n2", n.status().last_index)
    ack(n, "n3", n.status().last_index)
    drain(n)
    idx, term = n.propose(b"x")
    apps = sent(n, msg.AppendEntries)
    assert {m.dst for m in apps} == {"n2", "n3"}
    assert all(m.entries[-1] == Entry(term, idx, data=b"x") for m in apps)
    ack(n, "n3", idx - 1)
    assert n.status().commit == idx - 1
    ack(n, "n3", idx)
    assert n.status().commit == idx


def test_non_leader_rejects_proposals_naming_the_leader():
    n = make()
    n.step(msg.Heartbeat("n2", "n1", 3, 0))
    with pytest.raises(NotLeader) as err:
        n.propose(b"x")
    assert err.value.leader == "n2"


def test_leader_backtracks_next_index_with_conflict_hint():
    leader = make_leader(make("n1", storage=storage_with(founder_log([2] * 5), 3)))
    follower = make("n2", storage=storage_with(founder_log([2, 2, 3, 3, 3, 3, 3]), 3))
    # The follower diverges after index BOOT+2: one rejection must take the
    # leader straight there instead of one index per round trip.
    rounds = 0
    leader.step(msg.HeartbeatResponse("n2", "n1", leader.term))
    msgs = sent(leader, msg.AppendEntries)
    while True:
        rounds += 1
        to_n2 = [m for m in msgs if m.dst == "n2"]
        if not to_n2:
            break
        for m in to_n2:
            follower.step(m)
        for r in sent(follower):
            leader.step(r)
        msgs = sent(leader, msg.AppendEntries)
        if leader._progress["n2"].match == leader.status().last_index:
            break
    assert rounds == 2  # one rejection, then the right suffix
    assert [e.term for e in follower._log.entries] == [e.term for e in leader._log.entries]


def test_leader_counts_itself_toward_commit_only_once_persisted():
    n = make_leader(make())
    ack(n, "n2", n.status().last_index)
    drain(n)
    idx, _ = n.propose(b"x")
    rd = n.ready()  # its entries are being persisted...
    assert idx in [e.index for m in rd.messages if isinstance(m, msg.AppendEntries)
                   for e in m.entries]
    ack(n, "n2", idx)
    assert n.status().commit < idx  # ...n2 alone is no quorum of three
    n.advance(rd)  # the leader's own fsync completed
    assert n.status().commit == idx


def test_leader_messages_may_precede_its_fsync_only_within_a_durable_term():
    n = make_leader(make())
    n.propose(b"x")
    rd = n.ready()
    assert early_send_allowed(rd, HardState(n.term, n.status().vote or "", 0))
    assert all(is_leader_early_message(m) for m in rd.messages)
    n.advance(rd)
    c = make("n2")
    c.campaign()
    rd = c.ready()
    assert not early_send_allowed(rd, HardState())  # new term or vote: wait
    assert not any(is_leader_early_message(m) for m in rd.messages)
    assert not is_leader_early_message(msg.AppendEntriesResponse("n2", "n1", 1, 1))


def test_leader_pipelines_appends_without_waiting_for_acks():
    n = make_leader(make(max_inflight_msgs=4))
    ack(n, "n2", n.status().last_index)  # n2 enters replicate state
    drain(n)
    for i in range(6):
        n.propose(b"p%d" % i)
    to_n2 = [m for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert len(to_n2) == 4  # capped by the inflight window, no ack needed
    ack(n, "n2", to_n2[1].entries[-1].index)
    more = [m for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert more and more[0].prev_index == to_n2[-1].entries[-1].index


def test_leader_batches_many_entries_per_message():
    n = make_leader(make(max_entries_per_msg=3))
    ack(n, "n2", n.status().last_index)
    drain(n)
    n.step(msg.HeartbeatResponse("n3", "n1", n.term))  # probe for n3
    n.propose_batch([b"%d" % i for i in range(7)])
    to_n2 = [m for m in sent(n, msg.AppendEntries) if m.dst == "n2"]
    assert [len(m.entries) for m in to_n2] == [3, 3, 1]


# -- RequestVote receiver --------------------------------------------------


def test_request_vote_rejects_candidate_with_stale_term():
    n = make()
    n.step(msg.Heartbeat("n2", "n1", 5, 0))
    n._become_follower(5, None)
    n.step(msg.RequestVote("n3", "n1", 4, 100, 4))
    [r] = sent(n, msg.RequestVoteResponse)
    assert not r.granted and r.term == 5


def test_request_vote_grants_at_most_one_vote_per_term():
    n = make(check_quorum=False)
    n.step(msg.RequestVote("n2", "n1", 2, BOOT, 1))
    n.step(msg.RequestVote("n3", "n1", 2, BOOT, 1))
    n.step(msg.RequestVote("n2", "n1", 2, BOOT, 1))  # retransmission
    grants = [(m.dst, m.granted) for m in sent(n, msg.RequestVoteResponse)]
    assert grants == [("n2", True), ("n3", False), ("n2", True)]
    assert drain(n).hard_state is None and n.status().vote == "n2"


def test_request_vote_requires_candidate_log_at_least_as_up_to_date():
    n = make(storage=storage_with(founder_log([2, 2]), 2), check_quorum=False)
    n.step(msg.RequestVote("n2", "n1", 3, BOOT + 5, 1))   # older last term
    n.step(msg.RequestVote("n3", "n1", 3, BOOT + 1, 2))   # same term, shorter
    assert [m.granted for m in sent(n, msg.RequestVoteResponse)] == [False, False]
    n.step(msg.RequestVote("n3", "n1", 3, BOOT + 2, 2))
    assert [m.granted for m in sent(n, msg.RequestVoteResponse)] == [True]


def test_vote_is_persisted_in_hard_state_and_survives_restart():
    st = MemoryStorage()
    n = make(storage=st, check_quorum=False)
    st.save(n.ready())
    n.step(msg.RequestVote("n2", "n1", 2, BOOT, 1))
    st.save(n.ready())
    again = make(storage=st, check_quorum=False)
    assert (again.term, again.status().vote) == (2, "n2")
    again.step(msg.RequestVote("n3", "n1", 2, BOOT, 1))
    assert [m.granted for m in sent(again, msg.RequestVoteResponse)] == [False]


# -- AppendEntries receiver -------------------------------------------------


def test_append_entries_rejects_stale_term_and_reports_current_term():
    n = make()
    n._become_follower(4, None)
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT, 1, 0, [Entry(3, BOOT + 1)]))
    [r] = sent(n, msg.AppendEntriesResponse)
    assert r.term == 4 and n.status().last_index == BOOT


def test_append_entries_rejects_when_prev_entry_does_not_match():
    n = make(storage=storage_with(founder_log([2]), 2))
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT + 1, 3, 0, [Entry(3, BOOT + 2)]))
    [r] = sent(n, msg.AppendEntriesResponse)
    assert r.reject and r.index == BOOT + 1
    assert (r.hint_index, r.hint_term) == (BOOT + 1, 2)
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT + 7, 3, 0, []))
    [r] = sent(n, msg.AppendEntriesResponse)
    assert r.reject and r.hint_index == BOOT + 1


def test_append_entries_deletes_conflicting_entry_and_all_that_follow():
    n = make(storage=storage_with(founder_log([2, 2, 2]), 2))
    n.step(msg.AppendEntries("n2", "n1", 3, BOOT + 1, 2, 0, [Entry(3, BOOT + 2)]))
    assert [e.term for e in n._log.entries[BOOT:]] == [2, 3]
    rd = drain(n)
    assert [e.index for e in rd.entries] == [BOOT + 2]


def test_append_entries_appends_new_entries_and_ignores_stale_duplicates():
    n = make()
    full = [Entry(2, BOOT + 1), Entry(2, BOOT + 2)]
    n.step(msg.AppendEntries("n2", "n1", 2, BOOT, 1, 0, full))
    n.step(msg.AppendEntries("n2", "n1", 2, BOOT, 1, 0, full[:1]))  # late dup
    assert n.status().last_index == BOOT + 2
    assert [r.index for r in sent(n, msg.AppendEntriesResponse)] == [BOOT + 2, BOOT + 1]


def test_append_entries_sets_commit_to_min_of_leader_commit_and_last_new():
    n = make()
    n.step(msg.AppendEntries("n2", "n1", 2, BOOT, 1, BOOT + 10, [Entry(2, BOOT + 1)]))
    assert n.status().commit == BOOT + 1
    n.step(msg.Heartbeat("n2", "n1", 2, BOOT + 1))
    assert n.status().commit == BOOT + 1


# -- §5.4.2: committing entries from previous terms (Figure 8) -------------


def test_leader_commits_previous_term_entries_only_via_current_term_entry():
    st = storage_with(founder_log([2]), 3)
    n = make_leader(make(storage=st))
    old = BOOT + 1
    ack(n, "n2", old)  # majority holds the term-2 entry...
    assert n.status().commit < old  # ...but counting replicas must not commit it
    ack(n, "n2", old + 1)  # the new term's no-op reaches a majority
    assert n.status().commit == old + 1


def test_figure_8_uncommitted_old_term_entry_can_be_overwritten():
    ids = ["s1", "s2", "s3", "s4", "s5"]
    boot = len(ids)
    conf = msg.ConfState(voters=ids)

    def st(terms, term):
        s = storage_with(founder_log(terms, ids), term, voters=ids)
        s.hard_state = HardState(term, "", boot)
        return s
    # (b)/(c): s1 led term 2 and wrote index 6; s5 led term 3 and wrote a
    # different index 6. s1 comes back in term 4 and spreads its index 6.
    storages = {"s1": st([2], 3), "s2": st([2], 3), "s3": st([], 3),
                "s4": st([], 3), "s5": st([3], 3)}
    c = SimCluster(ids=ids, storages=storages, seed=1, check_quorum=False)
    assert c.nodes["s1"].raft.conf == conf
    c.net.partition(["s1", "s2", "s3"], ["s4"], ["s5"])
    c.nodes["s1"].raft.campaign()
    c.process(c.nodes["s1"])
    for _ in range(5):
        if c.nodes["s1"].raft.is_leader:
            break
        c.pump(1)
    s1_term = c.nodes["s1"].raft.term
    assert c.nodes["s1"].raft.is_leader and s1_term == 4
    c.crash("s1")  # dies before its term-4 no-op reaches anyone
    c.net.partition(["s2", "s3", "s4", "s5"], ["s1"])
    c.nodes["s3"].raft.step(msg.AppendEntries(
        "s1", "s3", s1_term, boot, 1, boot, [Entry(2, boot + 1)]))
    c.process(c.nodes["s3"])
    assert c.nodes["s3"].raft.term_at(boot + 1) == 2
    assert c.nodes["s3"].raft.status().commit == boot  # not committed
    # (d): s5 (last term 3) is elected by s2, s3, s4 and overwrites index 6.
    for _ in range(3):
        if c.nodes["s5"].raft.is_leader:
            break
        c.nodes["s5"].raft.campaign()
        c.process(c.nodes["s5"])
        c.pump(4)
    assert c.nodes["s5"].raft.is_leader
    c.pump(5)
    for nid in ("s2", "s3", "s4"):
        assert c.nodes[nid].raft.term_at(boot + 1) == 3
    assert c.nodes["s5"].raft.status().commit >= boot + 2


# -- safety properties (scenario checks; the sim checks them continuously)


def test_election_safety_at_most_one_leader_per_term():
    c = SimCluster(5, seed=3, loss=0.2, max_delay=4)
    for t in range(400):
        if t % 50 == 0:
            c.net.partition(*[[n] for n in sorted(c.nodes)])  # all split
        if t % 50 == 25:
            c.net.heal()
        c.tick()
        leaders = {}
        for node in c.up_nodes():
            if node.raft.is_leader:
                assert leaders.setdefault(node.raft.term, node.id) == node.id
    assert len(c.check.leaders) >= 2


def test_leader_append_only_never_rewrites_its_own_log():
    c = SimCluster(3, seed=4, loss=0.1, max_delay=3)
    snapshots = {}
    for t in range(300):
        c.tick()
        if t % 7 == 0:
            c.propose(b"t%d" % t)
        for node in c.up_nodes():
            if node.raft.is_leader:
                key = (node.id, node.raft.term)
                log = list(node.raft._log.entries)
                prev = snapshots.get(key, [])
                assert log[:len(prev)] == prev
                snapshots[key] = log


def test_log_matching_same_index_and_term_implies_same_prefix():
    c = SimCluster(5, seed=5, loss=0.1, dup=0.1, max_delay=3)
    for t in range(300):
        c.tick()
        c.propose(b"x%d" % t)
        if t == 100:
            c.net.partition(["n1", "n2"], ["n3", "n4", "n5"])
        if t == 200:
            c.net.heal()
    logs = [n.raft._log for n in c.nodes.values()]
    for a in logs:
        for b in logs:
            common = min(a.last_index(), b.last_index())
            for i in range(common, BOOT, -1):
                if a.term(i) == b.term(i):
                    assert a.entries[:i] == b.entries[:i]
                    break


def test_leader_completeness_new_leader_has_all_committed_entries():
    c = SimCluster(3, seed=6)
    c.run(40)
    c.await_commit(b"committed")
    first = c.leader()
    committed = list(first.raft._log.entries[:first.raft.status().commit])
    first_term = first.raft.term
    c.crash(first.id)
    c.run_until(lambda: c.leader() is not None, 200, "new leader")
    new = c.leader().raft
    assert new.term > first_term
    assert new._log.entries[:len(committed)] == committed


def test_state_machine_safety_nodes_apply_identical_sequences():
    c = SimCluster(5, seed=7, loss=0.1, max_delay=3)
    for t in range(400):
        if t % 3 == 0:
            c.propose(b"s%d" % t)
        if t == 150:
            c.crash(c.leader().id if c.leader() else "n1")
        if t == 250:
            c.heal()
        c.tick()
    seqs = [n.applied for n in c.nodes.values()]
    longest = max(seqs, key=len)
    assert len(longest) > 20
    for s in seqs:
        assert s == longest[:len(s)]


# -- pre-vote, check-quorum, leader stickiness ------------------------------


def test_pre_vote_partitioned_node_does_not_inflate_its_term():
    c = SimCluster(3, seed=8)
    c.run_until(lambda: c.leader() is not None, 100, "leader")
    term = c.leader().raft.term
    lone = next(n for n in sorted(c.nodes) if n != c.leader().id)
    c.net.partition([lone], [n for n in c.nodes if n != lone])
    c.run(200)
    assert c.nodes[lone].raft.term == term
    leader = c.leader().id
    c.net.heal()
    c.run(50)
    assert c.leader().id == leader and c.leader().raft.term == term


def test_without_pre_vote_partitioned_node_inflates_its_term():
    c = SimCluster(3, seed=8, pre_vote=False)
    c.run_until(lambda: c.leader() is not None, 100, "leader")
    term = c.leader().raft.term
    lone = next(n for n in sorted(c.nodes) if n != c.leader().id)
    c.net.partition([lone], [n for n in c.nodes if n != lone])
    c.run(200)
    assert c.nodes[lone].raft.term > term + 3


def test_pre_vote_is_not_granted_to_a_less_up_to_date_log():
    n = make(storage=storage_with(founder_log([2]), 2), check_quorum=False)
    n.step(msg.PreVote("n2", "n1", 3, BOOT, 1))
    [r] = sent(n, msg.PreVoteResponse)
    assert not r.granted and n.term == 2
    n.step(msg.PreVote("n2", "n1", 3, BOOT + 1, 2))
    [r] = sent(n, msg.PreVoteResponse)
    assert r.granted and r.term == 3 and n.term == 2 and n.status().vote is None


def test_check_quorum_isolated_leader_steps_down():
    c = SimCluster(3, seed=9)
    c.run_until(lambda: c.leader() is not None, 100, "leader")
    old = c.leader()
    c.net.partition([old.id], [n for n in c.nodes if n != old.id])
    term = old.raft.term
    c.run(2 * old.raft._election_ticks)
    assert not old.raft.is_leader and old.raft.term == term
    with pytest.raises(NotLeader):
        old.raft.propose(b"lost")


def test_follower_in_leader_lease_ignores_higher_term_votes():
    n = make()
    n.step(msg.Heartbeat("n2", "n1", 2, 0))
    n.step(msg.RequestVote("n3", "n1", 9, BOOT + 50, 8))
    n.step(msg.PreVote("n3", "n1", 9, BOOT + 50, 8))
    assert n.term == 2 and sent(n) == [msg.HeartbeatResponse("n1", "n2", 2)]
    for _ in range(n._election_ticks):
        n.tick()  # lease over, but pre-vote keeps the node still
    n.step(msg.RequestVote("n3", "n1", 9, BOOT + 50, 8))
    assert n.term == 9 and n.status().vote == "n3"


def test_leadership_transfer_timeout_now_overrides_lease():
    c = SimCluster(3, seed=10)
    c.run_until(lambda: c.leader() is not None, 100, "leader")
    c.run(5)
    old = c.leader()
    target = next(n for n in sorted(c.nodes) if n != old.id)
    assert old.raft.transfer_leadership(target)
    c.process(old)
    c.pump(4)
    assert c.leader().id == target


# -- ReadIndex --------------------------------------------------------------


def test_read_index_needs_heartbeat_quorum_before_answering():
    n = make_leader(make())
    ack(n, "n2", n.status().last_index)
    drain(n)
    n.read_index(b"r1")
    hbs = sent(n, msg.Heartbeat)
    assert {m.ctx for m in hbs} == {b"r1"}
    assert drain(n).read_states == ()
    n.step(msg.HeartbeatResponse("n3", "n1", n.term, b"r1"))
    assert drain(n).read_states == (ReadState(b"r1", n.status().commit),)


def test_read_index_waits_for_commit_in_current_term():
    n = make_leader(make())
    n.read_index(b"early")
    assert not any(m.ctx == b"early" for m in sent(n, msg.Heartbeat))
    ack(n, "n2", n.status().last_index)
    assert [m.ctx for m in sent(n, msg.Heartbeat)] == [b"early", b"early"]


def test_read_index_from_follower_is_forwarded_and_answered():
    c = SimCluster(3, seed=11)
    c.run_until(lambda: c.leader() is not None, 100, "leader")
    c.await_commit(b"w")
    follower = next(n for n in c.nodes.values() if not n.raft.is_leader)
    assert c.read(follower.id, b"f1")
    c.run(4)
    [rs] = follower.read_states
    assert rs.ctx == b"f1" and rs.index >= c.leader().raft.status().commit - 1
    assert follower.applied_index >= rs.index


def test_read_index_unanswered_by_partitioned_leader():
    c = SimCluster(3, seed=12, check_quorum=False)
    c.run_until(lambda: c.leader() is not None, 100, "leader")
    c.await_commit(b"w")
    old = c.leader()
    c.net.partition([old.id], [n for n in c.nodes if n != old.id])
    assert c.read(old.id, b"stale")
    c.run(100)
    assert old.raft.is_leader and old.read_states == []


def test_read_index_without_known_leader_raises():
    with pytest.raises(NotLeader):
        make().read_index(b"x")


# -- membership ---------------------------------------------------------------


def wait_leader(c):
    c.run_until(lambda: c.leader() is not None
                and c.leader().raft.status().committed_in_term, 200, "leader")
    return c.leader()


def test_learner_receives_log_but_does_not_vote_or_count_for_quorum():
    c = SimCluster(3, seed=13)
    wait_leader(c)
    c.add_node("n4")
    assert c.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n4"))
    c.await_commit(b"after")
    c.run(10)
    n4 = c.nodes["n4"].raft
    assert n4.conf.learners == {"n4"} and "n4" not in n4.conf.voters
    assert c.applied_by("n4", b"after")
    # Quorum is still 2 of n1..n3: with two of them down nothing commits
    # even though the learner has everything.
    leader = c.leader()
    others = [n for n in ("n1", "n2", "n3") if n != leader.id]
    c.crash(others[0])
    c.crash(others[1])
    idx, _ = leader.raft.propose(b"nope")
    c.process(leader)
    c.pump(5)
    assert leader.raft.status().commit < idx
    assert n4.role == Role.FOLLOWER


def test_promote_learner_to_voter_then_it_counts():
    c = SimCluster(3, seed=14)
    wait_leader(c)
    c.add_node("n4")
    c.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n4"))
    c.run(10)
    assert c.propose_conf_change(ConfChange(ConfChangeOp.ADD_VOTER, "n4"))
    c.run(10)
    assert all(n.raft.conf.voters == {"n1", "n2", "n3", "n4"}
               for n in c.nodes.values())
    c.await_commit(b"four")


def test_only_one_membership_change_at_a_time():
    n = make_leader(make())
    ack(n, "n2", n.status().last_index)
    n.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n4"))
    assert "n4" in n.conf.learners  # effective on append
    with pytest.raises(ConfChangeInProgress):
        n.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n5"))
    drain(n)
    ack(n, "n2", n.status().last_index)
    n.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n5"))


def test_conf_change_refused_before_leader_commits_in_its_term():
    n = make_leader(make())
    with pytest.raises(ConfChangeInProgress):
        n.propose_conf_change(ConfChange(ConfChangeOp.ADD_LEARNER, "n4"))


def test_invalid_conf_changes_are_refused():
    n = make_leader(make(voters=("n1",)))
    drain(n)
    for change in (ConfChange(ConfChangeOp.ADD_VOTER, "n1"),
                   ConfChange(ConfChangeOp.REMOVE_NODE, "n9"),
                   ConfChange(ConfChangeOp.REMOVE_NODE, "n1")):
        with pytest.raises(InvalidConfChange):
            n.propose_conf_change(change)


def test_uncommitted_conf_change_is_rolled_back_with_truncation():
    n = make("n2")
    cc = ConfChange(ConfChangeOp.REMOVE_NODE, "n3").encode()
    n.step(msg.AppendEntries("n1", "n2", 2, BOOT, 1, BOOT,
                             [Entry(2, BOOT + 1, msg.EntryKind.CONF_CHANGE, cc)]))
    assert n.conf.voters == {"n1", "n2"}
    n.step(msg.AppendEntries("n3", "n2", 3, BOOT, 1, BOOT, [Entry(3, BOOT + 1)]))
    assert n.conf.voters == {"n1", "n2", "n3"}


def test_removed_leader_steps_down_after_committing_its_removal():
    c = SimCluster(3, seed=15)
    old = wait_leader(c)
    assert c.propose_conf_change(ConfChange(ConfChangeOp.REMOVE_NODE, old.id))
    assert old.raft.is_leader  # still leads until the change commits
    c.run_until(lambda: not old.raft.is_leader, 50, "step down")
    new = wait_leader(c)
    assert new.id != old.id and old.id not in new.raft.conf.voters
    c.await_commit(b"without old")
    c.run(100)
    assert not old.raft.is_leader


# -- snapshots ------------------------------------------------------------------


def test_compaction_drops_entries_and_keeps_snapshot_with_config():
    n = make_leader(make())
    for i in range(5):
        n.propose(b"%d" % i)
    drain(n)
    ack(n, "n2", n.status().last_index)
    drain(n)
    snap = n.compact(n.status().applied - 1, b"state")
    assert snap.index == n.status().snapshot_index == n.snapshot_index
    assert n.snapshot_index == n._log.first_index() - 1
    assert snap.term == n.term and snap.meta.conf.voters == set(VOTERS)
    with pytest.raises(LogError):
        n.compact(n.status().applied + 1, b"too far")


def test_lagging_follower_receives_install_snapshot_and_restores():
    c = SimCluster(3, seed=16, compact_every=5)
    leader = wait_leader(c)
    lag = next(n for n in sorted(c.nodes) if n != leader.id)
    c.crash(lag)
    for i in range(30):
        c.await_commit(b"e%d" % i)
    assert c.leader().raft.status().snapshot_index > c.nodes[lag].storage.last_index()
    c.restart(lag)
    c.run(30)
    node = c.nodes[lag]
    assert node.storage.snapshot.index > 0
    assert [d for _i, _t, d in node.applied] == [b"e%d" % i for i in range(30)]
    assert node.raft.status().commit == c.leader().raft.status().commit


def test_follower_ignores_snapshot_older_than_its_commit():
    n = make()
    n.step(msg.AppendEntries("n2", "n1", 2, BOOT, 1, BOOT + 2,
                             [Entry(2, BOOT + 1), Entry(2, BOOT + 2)]))
    drain(n)
    old = msg.Snapshot(msg.SnapshotMeta(BOOT + 1, 2, msg.ConfState(VOTERS)), b"s")
    n.step(msg.InstallSnapshot("n2", "n1", 2, old))
    rd = drain(n)
    assert rd.snapshot is None and n.status().last_index == BOOT + 2
    assert rd.messages == (msg.InstallSnapshotResponse("n1", "n2", 2, BOOT + 2),)


def test_restart_rebuilds_from_snapshot_and_log():
    st = MemoryStorage()
    n = make(storage=st, voters=("n1",))
    for _ in range(n._randomized_timeout):
        n.tick()
    st.save(drain(n))
    for i in range(4):
        n.propose(b"%d" % i)
    for _ in range(2):  # persist the entries, then apply what that committed
        rd = n.ready()
        st.save(rd)
        n.advance(rd)
    st.compact(n.compact(n.status().applied - 2, b"snap"))
    again = make(storage=st, voters=("n1",))
    assert again._log.snapshot.data == b"snap"
    assert again.status().last_index == n.status().last_index
    assert [e.data for e in drain(again).committed_entries] == [b"2", b"3"]
