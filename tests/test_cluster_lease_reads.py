"""Lease reads on ClusterMembers (in-memory network, fake clock): the
leader answers a linearizable read without waiting for a heartbeat round,
and the driver delivers the ticks that passed in real time before anything
else, so a paused leader's lease is over when it wakes."""

import pytest
from twisted.internet import task

from doozertw.cluster.driver import Timing
from doozertw.cluster.memnet import MemoryNetwork
from doozertw.consensus import Role
from doozertw.store import CLOBBER
from doozertw.testing.memrun import outcome, run_until

VOTERS = ("n1", "n2", "n3")


class Monotonic:
    """A monotonic clock the test moves by hand (a paused process's view)."""

    def __init__(self, clock):
        self.clock = clock
        self.skew = 0.0

    def __call__(self):
        return self.clock.seconds() + self.skew


def cluster(timing):
    net = MemoryNetwork(task.Clock())
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i, timing=timing)
    run_until(net, lambda: net.leader() is not None
              and net.leader().driver.raft.status().committed_in_term)
    net.run(0.5)
    return net


def test_a_leased_leader_answers_a_read_before_any_message_could_travel():
    net = cluster(Timing(lease_reads=True))
    leader = net.leader()
    outcome(net, leader.node.set("/k", CLOBBER, b"v"))
    assert leader.driver.raft.holds_read_lease
    read = leader.node.get("/k")
    net.clock.advance(net.latency / 2)
    assert read.called and outcome(net, read)[0] == b"v"


def test_without_lease_reads_the_same_read_waits_for_a_heartbeat_round():
    net = cluster(Timing())
    leader = net.leader()
    outcome(net, leader.node.set("/k", CLOBBER, b"v"))
    read = leader.node.get("/k")
    net.clock.advance(net.latency / 2)
    assert not read.called
    assert outcome(net, read)[0] == b"v"


def test_follower_reads_stay_linearizable_under_the_lease():
    net = cluster(Timing(lease_reads=True))
    leader = net.leader()
    follower = next(m for m in net.members.values() if m is not leader)
    net.cut = {(leader.name, follower.name)}  # the follower misses the commit
    rev = outcome(net, leader.node.set("/lin", CLOBBER, b"new"))
    read = follower.node.get("/lin")
    net.run(0.05)
    assert not read.called
    net.heal()
    assert outcome(net, read) == (b"new", rev)


@pytest.mark.parametrize("paused", [0.2, 0.45, 2.0])
def test_a_leader_that_was_paused_holds_no_lease_when_it_wakes(paused):
    clock = task.Clock()
    mono = Monotonic(clock)
    net = MemoryNetwork(clock)
    timing = Timing(lease_reads=True, monotonic=mono)
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i, timing=timing)
    run_until(net, lambda: net.leader() is not None
              and net.leader().driver.raft.holds_read_lease)
    leader = net.leader()
    lease_ticks = timing.election_ticks - 3
    before = leader.driver.raft._ticks_alive
    mono.skew += paused            # time passed; the reactor ran nothing
    read = leader.node.get("/ctl/name")
    clock.advance(0)               # the read's round starts: Raft is called
    ticks = leader.driver.raft._ticks_alive - before
    assert ticks == min(int(paused / timing.tick), 3 * timing.election_ticks)
    if ticks >= lease_ticks:
        assert not leader.driver.raft.holds_read_lease
        net.clock.advance(net.latency / 2)
        assert not read.called      # a heartbeat round first, or no leader at all
    else:
        assert leader.driver.raft.holds_read_lease and leader.driver.raft.role == Role.LEADER
