"""Lease reads in the simulated cluster: one scenario per lease rule.

Each scenario lets a leader that holds a read lease be deposed while it
still believes it leads, and keeps sending it reads; the Checker's
linearizable-read invariant raises if one is answered below what the new
leader committed. Each rule is also planted broken here (the lease never
expires; a handover keeps it; a restarted voter votes at once) to show that
the scenario then fails. The unit tests of the same rules are in
tests/test_raft_lease.py.
"""

import pytest

from doozertw.consensus.lease import ReadLease
from doozertw.consensus.raft import RaftNode
from doozertw.testing.simcluster import SimCluster
from doozertw.testing.simdisk import InvariantViolation


def elect(c, max_ticks=300):
    c.run_until(lambda: c.leader() is not None
                and c.leader().raft.status().committed_in_term, max_ticks, "leader")
    return c.leader()


def others(c, *nids):
    return [n for n in sorted(c.nodes) if n not in nids]


ELECTION = 20   # ticks: a message takes one, as a tick of 50 ms dwarfs a LAN's RTT


def cluster(seed):
    return SimCluster(3, seed=seed, lease_reads=True, election_ticks=ELECTION)


def read_every_tick(c, nid, ticks, tag):
    """Send ``nid`` a read each tick (refused ones are not counted);
    returns (reads its lease answered at once, ticks in which it held a
    lease while another leader had committed in its term)."""
    at_once = overlap = 0
    old = c.nodes[nid]
    for i in range(ticks):
        before = len(old.read_states)
        if c.read(nid, b"%s-%d" % (tag, i)):
            at_once += len(old.read_states) > before
        c.tick()
        overlap += old.raft.holds_read_lease and any(
            n is not old and n.raft.is_leader and n.raft.status().committed_in_term
            for n in c.up_nodes())
    return at_once, overlap


def cut_off_leader(seed):
    """A full partition of the leader: it keeps its lease until it expires
    and steps down only at its next check-quorum, after a new leader may
    have committed."""
    c = cluster(seed)
    old = elect(c)
    c.run(5)
    assert old.raft.holds_read_lease
    c.net.partition([old.id], others(c, old.id))
    served, overlap = read_every_tick(c, old.id, 3 * ELECTION, b"old")
    new = c.leader()
    assert new is not None and new is not old
    return c, served, overlap


SEEDS = range(6)  # the planted never-ending lease is caught on seeds 1, 2, 3


def test_a_cut_off_leader_stops_answering_from_its_lease_in_time():
    served = 0
    for seed in SEEDS:
        c, at_once, overlap = cut_off_leader(seed)
        assert overlap == 0
        served += at_once
    assert served > 0  # the lease did answer reads before it expired


def test_planted_a_lease_that_never_expires_is_caught(monkeypatch):
    monkeypatch.setattr(ReadLease, "valid", lambda self: not self.revoked and self.until > 0)
    with pytest.raises(InvariantViolation, match="stale read"):
        for seed in SEEDS:
            cut_off_leader(seed)


def handover(c):
    """The leader hands over to a voter and then hears nobody: the new
    leader commits while the old one still thinks it leads."""
    old = elect(c)
    c.run(5)
    assert old.raft.holds_read_lease
    target = others(c, old.id)[0]
    for nid in others(c, old.id):
        c.net.block(nid, old.id)
    assert old.raft.transfer_leadership(target)
    c.process(old)
    at_once, overlap = read_every_tick(c, old.id, ELECTION, b"old")
    assert c.nodes[target].raft.is_leader and old.raft.is_leader
    return at_once, overlap


def test_a_leader_handing_over_gives_its_lease_up():
    at_once, overlap = handover(cluster(3))
    assert (at_once, overlap) == (0, 0)  # it still leads, but answers no read at once


def test_planted_a_handover_that_keeps_the_lease_is_caught(monkeypatch):
    monkeypatch.setattr(ReadLease, "revoke", lambda self: None)
    with pytest.raises(InvariantViolation, match="stale read"):
        handover(cluster(3))


def restarted_voter(c):
    """Leader L, voters A and B; B cannot reach L. A restarts (forgetting
    that it heard from L) and, cut off from L, is asked by B for votes
    while L's lease still rests on A's last answer."""
    lead = elect(c)
    c.run(5)
    a, b = others(c, lead.id)
    c.net.block(lead.id, b)
    c.net.block(b, lead.id)
    c.run(3)
    assert lead.raft.holds_read_lease
    c.net.block(lead.id, a)
    c.net.block(a, lead.id)
    c.crash(a)
    c.restart(a)
    c.nodes[b].raft.campaign()
    c.process(c.nodes[b])
    return read_every_tick(c, lead.id, ELECTION, b"old")


def test_a_restarted_voter_does_not_vote_during_its_first_election_timeout():
    at_once, overlap = restarted_voter(cluster(5))
    assert at_once > 0 and overlap == 0  # the lease served reads, and nobody else led


def test_planted_a_restarted_voter_that_votes_at_once_is_caught(monkeypatch):
    def without_the_start_guard(self):
        return (self._check_quorum and self._leader is not None
                and self._election_elapsed < self._election_ticks)
    monkeypatch.setattr(RaftNode, "_in_lease", without_the_start_guard)
    with pytest.raises(InvariantViolation, match="stale read"):
        restarted_voter(cluster(5))
