"""Durable cluster members on an in-memory network: restarts keep every
file and revision, a majority restart never makes two copies, a full disk
refuses writes and recovers, a failed disk stops the node."""

import pytest
from twisted.internet import task

from doozertw.cluster.bootstrap import Phase
from doozertw.cluster.driver import Timing
from doozertw.cluster.memnet import MemoryNetwork
from doozertw.errors import DoozerError
from doozertw.store import CLOBBER, Glob
from doozertw.testing.memrun import failure, outcome, run_until

VOTERS = ("n1", "n2", "n3")
SNAPSHOT_OFTEN = Timing(compact_every=7)


@pytest.fixture
def net():
    return MemoryNetwork(task.Clock())


def start_all(net, names=VOTERS, timing=Timing(), seed=0):
    for i, name in enumerate(names):
        net.add(name, VOTERS, seed=seed + i, durable=True, timing=timing)
    run_until(net, lambda: net.leader() is not None
              and all(m.driver.leader for m in net.members.values()), 5.0)


def write(net, path, value, via=None):
    member = via or net.leader()
    return outcome(net, member.node.set(path, CLOBBER, value), 3.0)


def files(member):
    return {e.path: (e.value, e.rev) for e in member.store.files(Glob("/**"))
            if not e.path.startswith("/ctl")}


def test_kill_every_node_and_restart_keeps_files_revisions_and_history(net):
    start_all(net, timing=SNAPSHOT_OFTEN)
    revs = [write(net, f"/k{i}", b"v%d" % i) for i in range(20)]
    before = files(net.leader())
    for name in VOTERS:
        net.crash(name)  # every node at once, unsynced data lost
    start_all(net, timing=SNAPSHOT_OFTEN, seed=10)
    for member in net.members.values():
        assert member.driver.member_id == member.name  # the same identity
        assert member.bootstrap.phase == Phase.MEMBER
        run_until(net, lambda m=member: m.store.rev >= revs[-1])
        assert {p: v for p, v in files(member).items() if p in before} == before
    leader = net.leader()
    assert leader.driver.raft.status().snapshot_index > 0  # restarted from a snapshot
    # past reads and a wait from a past revision work as before the restart
    assert leader.store.get("/k3", revs[3]) == (b"v3", revs[3])
    assert leader.store.first_event(Glob("/k1*"), revs[1]).rev == revs[1]
    new = write(net, "/after", b"x")
    assert new > max(revs)


def test_a_majority_restart_with_the_survivor_paused_never_forks(net):
    start_all(net)
    revs = [write(net, f"/k{i}", b"v") for i in range(5)]
    net.crash("n1")
    net.crash("n2")
    net.partition({"n3"}, {"n1", "n2"})  # the survivor says nothing meanwhile
    for i, name in enumerate(("n1", "n2")):
        net.add(name, VOTERS, seed=20 + i, durable=True)
    run_until(net, lambda: any(net.members[n].driver.is_leader for n in ("n1", "n2")), 5.0)
    leader = next(net.members[n] for n in ("n1", "n2") if net.members[n].driver.is_leader)
    later = write(net, "/after", b"x", via=leader)
    assert later > revs[-1]
    net.heal()
    survivor = net.members["n3"]
    run_until(net, lambda: survivor.store.rev >= later, 5.0)
    reference = files(leader)
    for member in net.members.values():
        run_until(net, lambda m=member: m.store.rev == leader.store.rev, 3.0)
        assert files(member) == reference


def test_in_memory_nodes_that_lost_their_state_never_refound(net):
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i)
    run_until(net, lambda: net.leader() is not None)
    write(net, "/kept", b"x")
    net.crash("n1")
    net.crash("n2")
    net.partition({"n3"}, {"n1", "n2"})
    fresh = [net.add(name, VOTERS, seed=30 + i) for i, name in enumerate(("n1", "n2"))]
    net.run(3.0)
    for member in fresh:  # a fresh majority is no reason to found
        assert not member.driver.started and member.bootstrap.phase == Phase.PROBING
    net.heal()
    run_until(net, lambda: all(m.bootstrap.phase != Phase.PROBING for m in fresh), 3.0)
    for member in fresh:  # they find the survivor's cluster and join it
        assert member.driver.member_id.startswith(member.name + "~")
        assert member.bootstrap.phase == Phase.JOINING or member.driver.is_member()


def test_a_full_disk_refuses_writes_keeps_reads_and_recovers(net):
    start_all(net)
    rev = write(net, "/before", b"x")
    leader = net.leader()
    disk = net.disks[leader.name]
    disk.fail_writes_with_enospc_after(0)
    err = failure(net, leader.node.set("/full", CLOBBER, b"y"), 8.0)
    assert "disk full" in err.detail or "no quorum" in err.detail
    assert leader.store.get("/before", None) == (b"x", rev)
    disk.clear_enospc()
    run_until(net, lambda: net.leader() is not None and net.leader().driver.write_refusal()
              is None, 8.0)
    assert write(net, "/after", b"z") > rev
    for member in net.members.values():
        run_until(net, lambda m=member: m.store.get("/after", None)[0] == b"z", 3.0)


def test_below_the_reserve_writes_are_refused_and_linearizable_reads_go_on(net):
    free = {"bytes": 1 << 40}
    for i, name in enumerate(VOTERS):
        provider = net.disk_provider(name)
        provider._free_bytes = lambda: free["bytes"]
        net.add(name, VOTERS, seed=i, storage_provider=provider)
    run_until(net, lambda: net.leader() is not None
              and all(m.driver.leader for m in net.members.values()), 5.0)
    rev = write(net, "/kept", b"x")
    free["bytes"] = 1024  # every disk nearly full
    for member in net.members.values():
        err = failure(net, member.node.set("/more", CLOBBER, b"y"), 1.0)
        assert err.detail.startswith("disk full")
        assert outcome(net, member.node.get("/kept"), 3.0) == (b"x", rev)
    free["bytes"] = 1 << 40
    assert write(net, "/more", b"y") > rev


def test_a_failed_fsync_stops_the_node_and_never_retries(net):
    stopped = []
    start_all(net)
    leader = net.leader()
    leader.driver.on_fatal = stopped.append
    net.disks[leader.name].fail_next_fsync_with_eio()
    d = leader.node.set("/eio", CLOBBER, b"x")
    net.run(1.0)
    assert stopped and leader.driver.failed is not None
    with pytest.raises(DoozerError, match="storage failed"):
        outcome(net, leader.node.set("/more", CLOBBER, b"x"), 1.0)
    d.addErrback(lambda f: None)
    # the others elect a new leader and go on
    run_until(net, lambda: any(m.driver.is_leader for m in net.members.values()
                               if m is not leader), 5.0)


def test_the_log_is_compacted_by_bytes_as_well_as_by_count(net):
    start_all(net, timing=Timing(compact_every=10_000, compact_bytes=4096))
    leader = net.leader()
    for i in range(12):
        write(net, f"/big{i}", b"x" * 1000)
    for member in net.members.values():
        run_until(net, lambda m=member: m.driver.raft.status().snapshot_index > 0, 3.0)
        stored = member.driver.storage
        assert stored.snapshot.index > 0
        assert sum(e.size() for e in stored.entries) < 16 * 1024
    assert leader.store.get("/big11", None)[0] == b"x" * 1000
