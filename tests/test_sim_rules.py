"""One simulated-cluster scenario per Raft safety rule.

Each scenario drives a SimCluster (seeded, deterministic) into the
situation its rule exists for, so that breaking the rule breaks a checked
property: the Checker's invariants (election safety, leader completeness,
state machine safety, linearizable reads, storage == log) raise
InvariantViolation at once, and the scenario asserts what the rule
promises (a leader with a connected quorum keeps leading). The hand-written
unit tests of the same rules are in tests/test_raft_rules.py; the table in
docs/testing.md ("Safety rules and their guards") pairs them and records
which planted break each scenario catches.
"""

import random

from doozertw.consensus.log import MemoryStorage
from doozertw.consensus.messages import (
    AppendEntries, ConfState, Entry, HardState,
)
from doozertw.consensus.raft import bootstrap_entries
from doozertw.consensus.ready import Role
from doozertw.testing.simcluster import SimCluster, chaos_step


def elect(c, max_ticks=300):
    """Run until a leader has committed in its term; that leader."""
    c.run_until(lambda: c.leader() is not None
                and c.leader().raft.status().committed_in_term,
                max_ticks, "leader")
    return c.leader()


def others(c, *nids):
    return [n for n in sorted(c.nodes) if n not in nids]


def write(c, count, tag):
    for i in range(count):
        c.await_commit(b"%s-%d" % (tag, i))


# -- §5.4.1 election restriction ------------------------------------------


def test_election_restriction_keeps_a_stale_log_from_leading():
    # n3 misses committed writes; when the leader is gone, the one voter
    # holding them must refuse n3 (pre-vote and vote). Broken, n3 leads
    # without them: leader completeness.
    c = SimCluster(3, seed=31, check_quorum=False)
    leader = elect(c)
    lag = others(c, leader.id)[1]
    c.net.partition([lag], others(c, lag))
    write(c, 3, b"missed")
    c.crash(leader.id)
    c.net.partition([lag] + others(c, lag, leader.id), [leader.id])
    assert not campaign_until_leader(c, lag, rounds=3)
    c.heal()
    c.await_commit(b"after")
    c.run(10)
    assert c.applied_by(lag, b"missed-2")


# -- §5.4.2 only entries of the current term are committed by counting ----


def founded(ids, terms, term, vote=""):
    """A storage holding the founding entries of ``ids``, then one normal
    entry of each of ``terms``; hard state ``term``/``vote``, commit at
    the founding entries."""
    st = MemoryStorage()
    st.append(bootstrap_entries(ConfState(voters=ids)))
    boot = st.last_index()
    st.append([Entry(t, boot + 1 + i, data=b"term-%d" % t)
               for i, t in enumerate(terms)])
    st.hard_state = HardState(term, vote, boot)
    return st, boot


def campaign_until_leader(c, nid, rounds=4):
    node = c.nodes[nid]
    for _ in range(rounds):
        if node.raft.is_leader:
            break
        node.raft.campaign()
        c.process(node)
        c.pump(4)
    return node.raft.is_leader


def test_current_term_commit_rule_figure_8():
    # Raft paper, Figure 8 (c)-(d). s1 (term 2) and s5 (term 3) each wrote
    # a different entry 6; s1 is elected in term 4 and copies its term-2
    # entry 6 to s3 (one entry per message, so its term-4 no-op lags):
    # entry 6 is now on a majority, but it is of an earlier term and must
    # not be committed by counting. s1 dies; s5 (last term 3) is elected by
    # s3 and s4 and replaces entry 6. Broken (commit by counting), s1 had
    # applied entry 6: leader completeness when s5 leads.
    ids = ["s1", "s2", "s3", "s4", "s5"]
    storages = {"s1": founded(ids, [2], 3)[0], "s2": founded(ids, [2], 2)[0],
                "s3": founded(ids, [], 3, "s5")[0],
                "s4": founded(ids, [], 3, "s5")[0],
                "s5": founded(ids, [3], 3, "s5")[0]}
    boot = founded(ids, [], 1)[1]
    c = SimCluster(ids=ids, storages=storages, seed=40, check_quorum=False,
                   max_entries_per_msg=1)
    c.crash("s5")
    c.net.partition(["s1", "s2", "s3"], ["s4"], ["s5"])
    assert campaign_until_leader(c, "s1") and c.nodes["s1"].raft.term == 4
    s3 = c.nodes["s3"]
    for _ in range(10):
        c.pump(1)
        if s3.raft.term_at(boot + 1) == 2:
            break
    c.pump(1)  # s3's acknowledgement of entry 6 reaches s1
    assert s3.raft.status().last_index == boot + 1  # not the no-op
    c.crash("s1")
    c.restart("s5")
    c.net.partition(["s2", "s3", "s4", "s5"], ["s1"])
    assert campaign_until_leader(c, "s5")
    c.pump(10)
    assert s3.raft.term_at(boot + 1) == 3
    c.heal()
    c.await_commit(b"after figure 8")
    assert not any(c.applied_by(n, b"term-2") for n in c.nodes)


# -- §5.1 a higher term makes any server a follower -----------------------


def test_a_leader_seeing_a_higher_term_steps_down():
    # The leader is cut off (still believing it leads: no check-quorum)
    # while the others elect a new leader; on healing it hears the higher
    # term and must become a follower of it.
    # Broken (it takes the term but keeps leading), two nodes lead one
    # term: election safety.
    c = SimCluster(3, seed=33, check_quorum=False)  # it still leads
    old = elect(c)
    c.net.partition([old.id], others(c, old.id))
    c.run_until(lambda: c.leader() is not old, 200, "new leader")
    write(c, 2, b"new")
    c.net.heal()
    c.run(40)
    assert old.raft.role == Role.FOLLOWER
    assert old.raft.term == c.leader().raft.term


# -- pre-vote and the leader lease: no disruption by a node that cannot
#    win -------------------------------------------------------------------


def test_pre_vote_a_rejoining_node_does_not_depose_the_leader():
    # A node partitioned away for many election timeouts comes back: with
    # pre-vote its term never grew, and the leader stays. Broken (elections
    # without a pre-vote round), its inflated term deposes the leader.
    c = SimCluster(5, seed=34)
    leader = elect(c)
    term = leader.raft.term
    lone = others(c, leader.id)[0]
    c.net.partition([lone], others(c, lone))
    c.run(200)
    c.net.heal()
    c.run(60)
    assert c.leader() is leader and leader.raft.term == term
    assert sorted(c.check.leaders) == [term]


def test_leader_lease_a_node_that_cannot_hear_the_leader_does_not_depose_it():
    # The leader's messages to one follower are lost (one-way), so that
    # follower times out and asks for (pre-)votes; the others hear the
    # leader and must ignore it while their lease lasts. Broken, they
    # elect it and the working leader is deposed.
    c = SimCluster(3, seed=35)
    leader = elect(c)
    term = leader.raft.term
    deaf = others(c, leader.id)[0]
    c.net.block(leader.id, deaf)
    c.run(200)
    assert c.leader() is leader and leader.raft.term == term
    assert sorted(c.check.leaders) == [term]


def test_check_quorum_an_isolated_leader_stops_leading():
    # Check-quorum, the other half of the lease: a leader that hears no
    # quorum within an election timeout steps down (so the lease the
    # followers honour cannot outlive it).
    c = SimCluster(3, seed=36)
    old = elect(c)
    c.net.partition([old.id], others(c, old.id))
    c.run(25)
    assert not old.raft.is_leader


# -- learners are outside every quorum ------------------------------------


def test_learners_never_make_a_commit_quorum():
    # The leader is partitioned with both learners, away from the other
    # two voters. Counting learners, it would commit with them; the
    # voters then elect a leader without that entry: leader completeness.
    c = SimCluster(3, seed=37, learners=("l1", "l2"), check_quorum=False)
    old = elect(c)
    c.run(5)
    voters = others(c, old.id, "l1", "l2")
    c.net.partition([old.id, "l1", "l2"], voters)
    old.raft.propose(b"learners only")
    c.process(old)
    c.run(10)
    c.run_until(lambda: c.leader() is not old, 300, "new leader")
    write(c, 1, b"voters")
    c.net.heal()
    c.run(40)
    assert not any(c.applied_by(n, b"learners only") for n in c.nodes)


# -- a snapshot received over a divergent log replaces it -----------------


def test_snapshot_over_a_divergent_log_replaces_it():
    # The old leader, cut off, appends entries nobody else has; the new
    # leader commits past them and compacts, so the old leader is brought
    # back by a snapshot whose index falls inside its divergent suffix.
    # Kept entries after the snapshot (in memory or in storage) break the
    # storage == log check, or log matching.
    c = SimCluster(3, seed=38, compact_every=4, check_quorum=False)
    old = elect(c)
    c.net.partition([old.id], others(c, old.id))
    for i in range(20):
        old.raft.propose(b"divergent-%d" % i)
        c.process(old)
    divergent_last = old.raft.status().last_index
    c.run_until(lambda: c.leader() is not old, 300, "new leader")
    write(c, 8, b"majority")
    new = c.leader()
    assert divergent_last > new.raft.status().snapshot_index > \
        old.raft.status().commit
    c.net.heal()
    c.run_until(lambda: old.raft.status().snapshot_index >=
                new.raft.status().snapshot_index > 0, 200, "snapshot")
    c.run(20)
    assert not any(c.applied_by(old.id, b"divergent-%d" % i) for i in range(20))
    assert c.check.saves_checked > 0


# -- ReadIndex: the leader confirms it still leads before answering -------


def test_read_index_at_a_deposed_leader_is_never_answered_stale():
    # Without check-quorum a leader cut off from the majority keeps
    # believing it leads while a new leader commits writes. Reads sent to
    # it, and through its partitioned follower, must wait for a quorum
    # that never answers. Broken (answering from its own commit index),
    # they are stale: the Checker's linearizable-read invariant.
    c = SimCluster(5, seed=39, check_quorum=False)
    old = elect(c)
    follower = others(c, old.id)[0]
    c.net.partition([old.id, follower], others(c, old.id, follower))
    c.run_until(lambda: c.leader() is not old, 300, "new leader")
    write(c, 3, b"after")
    assert old.raft.is_leader
    for i in range(4):
        assert c.read(old.id, b"old-%d" % i)
        assert c.read(follower, b"via-%d" % i)
        assert c.read(c.leader().id, b"new-%d" % i)
        c.run(5)
    c.run(30)
    assert old.read_states == [] and c.nodes[follower].read_states == []
    assert c.check.reads_released >= 4


# -- a follower serves a read only once applied up to the read index ------


def test_reads_are_served_only_from_state_applied_to_the_read_index():
    # Reads at every node while every AppendEntries to one node (another
    # one for 30 of every 50 ticks) is lost, with crashes and slow disks:
    # heartbeats and ReadIndex answers reach the lagging follower, the
    # entries up to its read index do not. Serving at once breaks the linearizable-read
    # invariant (every seed below catches it); waiting for the apply never
    # does.
    released = 0
    for seed in READ_SEEDS:
        released += lagging_follower_reads(seed)
    assert released > 500


READ_SEEDS = range(900, 905)


def lagging_follower_reads(seed, ticks=300):
    c = SimCluster(5, seed=seed, max_delay=2, disk_delay=2)
    rng = random.Random(seed)
    lagging = [None]
    c.net.drop = lambda m: isinstance(m, AppendEntries) and m.dst == lagging[0]
    for t in range(ticks):
        if t % 50 == 0:
            lagging[0] = rng.choice(sorted(c.nodes))
        elif t % 50 == 30:
            lagging[0] = None  # catch up
        chaos_step(c, rng, crash_p=0.01, partition_p=0.0, heal_p=0.0,
                   propose_p=0.5, read_p=0.6, lossy_p=0.5)
        c.tick()
    return c.check.reads_released
