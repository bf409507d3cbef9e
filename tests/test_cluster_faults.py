"""Seeded fault runs on the in-memory network: partitions, duplicated
payloads, crashes and restarts without state while every node takes writes. Checked: every
acknowledged write survives with its revision, and every node ends with
the same store."""

import os
import random

import pytest
from twisted.internet import task

from doozertw.cluster.memnet import MemoryNetwork
from doozertw.store import CLOBBER, Glob

VOTERS = ("n1", "n2", "n3")
SEEDS = int(os.environ.get("CLUSTER_FAULT_SEEDS", "8"))  # more: CLUSTER_FAULT_SEEDS=200


def run_until(net, predicate, seconds):
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return True
        net.run(0.01)
    return predicate()


def settled(net):
    leader = net.leader()
    if leader is None:
        return False
    lives = {m.driver.member_id for m in net.members.values()}
    last = leader.driver.raft.status().last_index
    # the configuration naming every live node is committed and applied everywhere
    return all(m.driver.conf.voters == lives and m.driver.applied == last
               for m in net.members.values())


@pytest.mark.parametrize("seed", range(SEEDS))
def test_acknowledged_writes_survive_faults(seed):
    rng = random.Random(seed)
    net = MemoryNetwork(task.Clock())
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=seed * 10 + i)
    assert run_until(net, lambda: net.leader() is not None, 5.0)
    acked, failed = {}, []
    counter = [0]

    def write():
        name = rng.choice(sorted(net.members))
        key = f"/w/{counter[0]}"
        counter[0] += 1
        d = net.members[name].node.set(key, CLOBBER, key.encode())
        d.addCallbacks(lambda rev, key=key: acked.__setitem__(key, rev), failed.append)

    for round_ in range(6):
        fault = rng.choice(["partition", "crash", "isolate-leader", "duplicate", "none"])
        victim = rng.choice(VOTERS)
        if fault == "partition":
            net.partition({victim}, set(VOTERS) - {victim})
        elif fault == "isolate-leader" and net.leader() is not None:
            net.isolate(net.leader().name)
        elif fault == "crash":
            net.crash(victim)
        elif fault == "duplicate":
            net.duplicate = True
        for _ in range(30):
            write()
            net.run(rng.choice([0.01, 0.05, 0.1]))
        net.heal()
        net.duplicate = False
        if fault == "crash":
            net.add(victim, VOTERS, seed=seed * 100 + round_)
        assert run_until(net, lambda: settled(net), 15.0), f"round {round_} did not settle"

    net.run(6.0)  # every outstanding request has answered or timed out
    assert run_until(net, lambda: settled(net), 10.0)
    assert acked, "no write succeeded"
    stores = [m.store for m in net.members.values()]
    reference = stores[0].files(Glob("/**"))
    for store in stores[1:]:
        assert store.files(Glob("/**")) == reference
    final = {e.path: e.rev for e in stores[0].files(Glob("/w/*"))}
    for key, rev in acked.items():
        assert final.get(key) == rev, f"acknowledged {key}@{rev} lost"
    revs = sorted(acked.values())
    assert len(set(revs)) == len(revs)
    assert all(f.check(Exception) for f in failed)
