"""Leases in a 3-node in-memory cluster: expiry by the leader's clock,
keep-alives forwarded by followers, failover without early expiry."""

import pytest
from twisted.internet import task

from doozertw.cluster.driver import Timing
from doozertw.cluster.memnet import MemoryNetwork
from doozertw.errors import ErrCode
from doozertw.store import ANY, CLOBBER
from doozertw.store.mutation import Compare, DeleteFile, SetFile
from doozertw.testing.memrun import failure, outcome, run_until

VOTERS = ("n1", "n2", "n3")


@pytest.fixture
def cluster():
    net = MemoryNetwork(task.Clock())
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i)
    run_until(net, lambda: net.leader() is not None and net.leader().lessor.active
              and all(len(m.membership.slots()) == 3 for m in net.members.values()))
    return net


def a_follower(net):
    return next(m for m in net.members.values() if m is not net.leader())


def test_minimum_ttl_is_one_and_a_half_election_timeouts(cluster):
    follower = a_follower(cluster)
    lease = outcome(cluster, follower.node.grant_lease(1))
    assert lease.ttl == 2 == follower.lessor.min_ttl


def test_a_lease_expires_on_every_node_and_takes_its_files(cluster):
    follower = a_follower(cluster)
    lease = outcome(cluster, follower.node.grant_lease(3))
    outcome(cluster, follower.node.set("/eph/a", CLOBBER, b"1", lease=lease.id))
    outcome(cluster, follower.node.set("/eph/b", CLOBBER, b"2", lease=lease.id))
    outcome(cluster, follower.node.set("/kept", CLOBBER, b"3"))
    seen = []
    follower.node.watch("/eph/*", follower.store.rev + 1, seen.append)
    granted_at = cluster.clock.seconds()
    run_until(cluster, lambda: len(seen) == 2, 6.0)
    assert 3.0 <= cluster.clock.seconds() - granted_at <= 3.0 + 0.6
    assert [(e.path, e.kind) for e in seen] == [("/eph/a", "del"), ("/eph/b", "del")]
    assert seen[1].rev == seen[0].rev + 1
    run_until(cluster, lambda: all(m.store.rev == follower.store.rev
                                   for m in cluster.members.values()))
    for member in cluster.members.values():
        assert [e.path for e in member.store.files(member.node.glob("/**"))
                if e.path.startswith(("/eph", "/kept"))] == ["/kept"]
        assert lease.id not in member.store.leases
    assert failure(cluster, follower.node.keepalive(lease.id), 2.0).code == ErrCode.NOENT


def test_keepalives_through_a_follower_keep_a_lease(cluster):
    follower = a_follower(cluster)
    lease = outcome(cluster, follower.node.grant_lease(2))
    outcome(cluster, follower.node.set("/eph", CLOBBER, b"x", lease=lease.id))
    for _ in range(10):
        cluster.run(1.0)
        kept = outcome(cluster, follower.node.keepalive(lease.id))
        assert kept.ttl == 2 and kept.remaining == pytest.approx(2.0, abs=0.05)
        assert kept.paths == ("/eph",)
    assert outcome(cluster, follower.node.get("/eph"))[0] == b"x"
    info = outcome(cluster, follower.node.lease_info(lease.id))
    assert info.paths == ("/eph",) and 0 < info.remaining <= 2.0
    assert [i.id for i in outcome(cluster, follower.node.leases())] == [lease.id]


def test_keepalives_are_not_written_to_the_log(cluster):
    leader = cluster.leader()
    lease = outcome(cluster, leader.node.grant_lease(5))
    before = leader.driver.raft.status().last_index
    for _ in range(5):
        outcome(cluster, a_follower(cluster).node.keepalive(lease.id))
        outcome(cluster, leader.node.keepalive(lease.id))
    assert leader.driver.raft.status().last_index == before


def test_a_failover_does_not_expire_a_lease_kept_alive(cluster):
    old = cluster.leader()
    client_node = a_follower(cluster)
    lease = outcome(cluster, client_node.node.grant_lease(2))
    outcome(cluster, client_node.node.set("/eph", CLOBBER, b"x", lease=lease.id))
    outcome(cluster, client_node.node.keepalive(lease.id))
    cluster.crash(old.name)
    # the holder keeps trying every half TTL; the lease must survive
    for _ in range(12):
        cluster.run(0.5)
        client_node.node.keepalive(lease.id).addErrback(lambda f: None)
    new = cluster.leader()
    assert new is not None and new.name != old.name and new.lessor.active
    assert outcome(cluster, client_node.node.get("/eph"))[0] == b"x"
    assert lease.id in client_node.store.leases


def test_a_new_leader_extends_every_lease_by_an_election_timeout(cluster):
    old = cluster.leader()
    survivor = a_follower(cluster)
    lease = outcome(cluster, survivor.node.grant_lease(2))
    outcome(cluster, survivor.node.set("/eph", CLOBBER, b"x", lease=lease.id))
    cluster.run(1.5)  # 0.5 s left on the old leader's clock
    cluster.crash(old.name)
    run_until(cluster, lambda: cluster.leader() is not None
              and cluster.leader().lessor.active, 5.0)
    promoted_at = cluster.clock.seconds()
    run_until(cluster, lambda: lease.id not in survivor.store.leases, 10.0)
    # the new leader counts ttl + extension (2 + 1 s) from its promotion
    assert cluster.clock.seconds() - promoted_at >= 3.0


def test_revoke_through_a_follower_deletes_files_in_one_step(cluster):
    follower = a_follower(cluster)
    lease = outcome(cluster, follower.node.grant_lease(60))
    for name in ("b", "a", "c"):
        outcome(cluster, follower.node.set(f"/r/{name}", CLOBBER, b"v", lease=lease.id))
    start = follower.store.rev
    rev = outcome(cluster, follower.node.revoke_lease(lease.id))
    assert rev == start + 3
    assert [e.path for e in follower.store.files(ANY) if e.path.startswith("/r/")] == []
    deleted = [follower.store.first_event(follower.node.glob(f"/r/{n}"), start + 1)
               for n in ("a", "b", "c")]
    assert [(e.rev, e.kind) for e in deleted] == [
        (start + 1, "del"), (start + 2, "del"), (start + 3, "del")]
    assert failure(cluster, follower.node.revoke_lease(lease.id), 2.0).code == ErrCode.NOENT


@pytest.mark.parametrize("timing", [Timing(), Timing(compact_every=5)],
                         ids=["from-the-log", "from-a-snapshot"])
def test_leases_survive_a_restart_of_every_node_and_then_expire(timing):
    net = MemoryNetwork(task.Clock())

    def start_all(seed):
        for i, name in enumerate(VOTERS):
            net.add(name, VOTERS, seed=seed + i, durable=True, timing=timing)
        run_until(net, lambda: net.leader() is not None and net.leader().lessor.active, 5.0)

    start_all(0)
    leader = net.leader()
    lease = outcome(net, leader.node.grant_lease(30))
    outcome(net, leader.node.set("/eph", CLOBBER, b"x", lease=lease.id))
    for i in range(8):
        outcome(net, leader.node.set(f"/pad{i}", CLOBBER, b"p"))
    for name in VOTERS:
        net.crash(name)
    net.run(20.0)  # down for a while: the countdown restarts with the new leader
    start_all(10)
    if timing.compact_every == 5:
        assert net.leader().driver.raft.status().snapshot_index > 0
    for member in net.members.values():
        run_until(net, lambda m=member: m.store.leases.owner("/eph") == lease.id)
        assert member.store.leases.ttl(lease.id) == 30
    back = net.clock.seconds()
    run_until(net, lambda: all(lease.id not in m.store.leases
                               for m in net.members.values()), 40.0)
    assert net.clock.seconds() - back >= 30.0
    assert outcome(net, net.leader().node.get("/eph")) == (b"", 0)


def test_a_txn_through_a_follower_is_one_entry(cluster):
    follower = a_follower(cluster)
    outcome(cluster, follower.node.set("/t/x", CLOBBER, b"1"))
    result = outcome(cluster, follower.node.txn(
        (Compare("/t/x", value=b"1"), Compare("/t/none", rev=0)),
        (SetFile("/t/y", CLOBBER, b"2"), DeleteFile("/t/x", CLOBBER)),
        (SetFile("/t/lost", CLOBBER, b"3"),)))
    assert result.succeeded and result.revs == (result.rev - 1, result.rev)
    run_until(cluster, lambda: all(m.store.rev >= result.rev
                                   for m in cluster.members.values()))
    for member in cluster.members.values():
        assert member.store.get("/t/y") == (b"2", result.rev - 1)
        assert member.store.get("/t/x") == (b"", 0)


# -- randomized: no lease ends early, none outlives its holder for long ----------------


def _nemesis(net, rng):
    """One random fault or repair among the voters."""
    choice = rng.random()
    if choice < 0.3:
        net.heal()
    elif choice < 0.6:
        net.isolate(rng.choice(VOTERS))
    elif choice < 0.8:
        a, b, c = rng.sample(VOTERS, 3)
        net.partition({a}, {b, c})
    else:
        net.heal()


@pytest.mark.parametrize("seed", range(6))
def test_a_kept_lease_never_expires_early_under_partitions(seed):
    """The holder keeps its lease alive through random nodes every TTL/4
    while leaders come and go; the lease is revoked (on any node) no sooner
    than TTL after the last keep-alive that succeeded was sent, and once the
    holder stops and the network heals it is gone within TTL plus a failover."""
    import random
    rng = random.Random(seed)
    net = MemoryNetwork(task.Clock())
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=seed * 10 + i)
    run_until(net, lambda: net.leader() is not None and net.leader().lessor.active, 5.0)
    ttl = 3
    lease = outcome(net, net.leader().node.grant_lease(ttl)).id
    outcome(net, net.leader().node.set("/held", CLOBBER, b"x", lease=lease))
    revoked_at = {}
    for name, member in net.members.items():
        member.node.watch("/held", member.store.rev + 1,
                          lambda e, n=name: e.is_set or revoked_at.setdefault(
                              n, net.clock.seconds()))
    last_ok = [net.clock.seconds()]

    def keep_alive():
        sent = net.clock.seconds()
        via = net.members[rng.choice(VOTERS)]

        def ok(_):
            last_ok[0] = max(last_ok[0], sent)
        via.node.keepalive(lease).addCallbacks(ok, lambda f: None)

    for step in range(int(20 / 0.25)):
        keep_alive()
        if step % 8 == 0:
            _nemesis(net, rng)
        net.run(0.25)
        assert not revoked_at or min(revoked_at.values()) >= last_ok[0] + ttl, (
            "revoked early", revoked_at, last_ok[0])
    stopped = net.clock.seconds()
    net.heal()
    run_until(net, lambda: len(revoked_at) == 3, 20.0)
    assert min(revoked_at.values()) >= last_ok[0] + ttl
    assert max(revoked_at.values()) - stopped <= ttl + 6.0
