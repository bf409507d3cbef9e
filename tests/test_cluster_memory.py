"""Clusters of ClusterMembers on an in-memory network and a fake clock."""

import pytest
from twisted.internet import task

from doozertw.cluster.envelope import name_of
from doozertw.cluster.memnet import MemoryNetwork
from doozertw.cluster.bootstrap import Phase
from doozertw.consensus import Role
from doozertw.errors import ErrCode
from doozertw.store import CLOBBER, Glob
from doozertw.testing.memrun import failure, outcome, run_until

VOTERS = ("n1", "n2", "n3")


@pytest.fixture
def net():
    return MemoryNetwork(task.Clock())


@pytest.fixture
def cluster(net):
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i)
    run_until(net, lambda: net.leader() is not None and all(
        m.membership.slots() and len(m.membership.slots()) == 3
        for m in net.members.values()))
    return net


def followers(net):
    leader = net.leader()
    return [m for m in net.members.values() if m is not leader]


def voters_of(member):
    return sorted(member.driver.conf.voters)


# -- forming -----------------------------------------------------------------------


def test_three_nodes_found_one_cluster_and_describe_themselves(cluster):
    leader = cluster.leader()
    assert leader is not None
    for member in cluster.members.values():
        assert member.bootstrap.phase == Phase.MEMBER
        assert member.driver.member_id == member.name  # founders keep their names
        assert voters_of(member) == list(VOTERS)
        assert member.driver.leader == leader.driver.member_id
    store = leader.store
    run_until(cluster, lambda: len(store.files(Glob("/ctl/node/*/addr"))) == 3)
    assert sorted(e.value for e in store.files(Glob("/ctl/cal/*"))) == [b"n1", b"n2", b"n3"]
    assert store.get("/ctl/name", None)[0] == b"mem"
    assert store.get("/ctl/node/n2/addr", None)[0] == b"n2:8046"
    assert store.get("/ctl/node/n2/member", None)[0] == b"n2"
    assert store.get("/ctl/node/n3/peer", None)[0] == b"mem:n3"


def test_every_node_applies_the_same_history(cluster):
    member = followers(cluster)[0]
    for i in range(5):
        outcome(cluster, member.node.set(f"/k{i}", CLOBBER, b"v%d" % i))
    cluster.run(0.5)
    files = [m.store.files(Glob("/**")) for m in cluster.members.values()]
    assert files[0] == files[1] == files[2]
    assert len({m.store.rev for m in cluster.members.values()}) == 1


# -- writes and reads ----------------------------------------------------------------


def test_a_follower_forwards_writes_and_gets_the_revision(cluster):
    follower = followers(cluster)[0]
    before = cluster.leader().store.rev
    rev = outcome(cluster, follower.node.set("/app/x", 0, b"one"))
    assert rev == before + 1
    assert follower.store.get("/app/x", None) == (b"one", rev)
    # compare-and-set is decided by the replicated store, on the follower too
    err = failure(cluster, follower.node.set("/app/x", 0, b"two"), 1.0)
    assert err.code == ErrCode.REV_MISMATCH
    # failures take no revision
    assert outcome(cluster, follower.node.delete("/app/x", rev)) == rev + 1


def test_writes_from_one_turn_are_batched(cluster):
    follower = followers(cluster)[0]
    leader = cluster.leader()
    last_before = leader.driver.raft.status().last_index
    ds = [follower.node.set(f"/b/{i}", CLOBBER, b"x") for i in range(20)]
    revs = [outcome(cluster, d) for d in ds]
    assert revs == sorted(revs) and len(set(revs)) == 20
    # 20 entries, appended by the leader as consecutive indexes of one batch
    entries = [e for e in leader.driver.storage.entries if e.index > last_before]
    assert len([e for e in entries if e.data]) >= 20


def test_reads_on_a_follower_are_linearizable(cluster):
    leader = cluster.leader()
    follower = followers(cluster)[0]
    # the follower does not hear of the commit before the client asks it
    cluster.cut = {(leader.name, follower.name)}
    rev = outcome(cluster, leader.node.set("/lin", CLOBBER, b"new"))
    assert follower.store.get("/lin", None) == (b"", 0)  # not applied there yet
    read = follower.node.get("/lin")
    cluster.run(0.05)
    assert not read.called  # a local read now would be stale: it waits
    cluster.heal()
    assert outcome(cluster, read) == (b"new", rev)
    assert outcome(cluster, follower.node.rev()) >= rev


def test_reads_arriving_together_share_one_read_index_round(cluster):
    follower = followers(cluster)[0]
    outcome(cluster, follower.node.set("/r", CLOBBER, b"v"))
    rounds = follower.reads.rounds
    reads = [follower.node.get("/r") for _ in range(10)] + [follower.node.stat("/r")]
    results = [outcome(cluster, d) for d in reads]
    assert results[0][0] == b"v" and results[-1][0] == 1
    assert follower.reads.rounds - rounds == 1


def test_a_read_pinned_to_a_revision_is_served_locally(cluster):
    follower = followers(cluster)[0]
    rev = outcome(cluster, follower.node.set("/p", CLOBBER, b"v"))
    rounds = follower.reads.rounds
    assert outcome(cluster, follower.node.get("/p", rev)) == (b"v", rev)
    assert follower.reads.rounds == rounds


def test_nop_and_wait_work_on_every_node(cluster):
    leader = cluster.leader()
    follower = followers(cluster)[0]
    start = follower.store.rev + 1
    waiting = follower.node.wait("/w/**", start)
    assert outcome(cluster, leader.node.nop()) is None
    rev = outcome(cluster, leader.node.set("/w/a", CLOBBER, b"z"))
    event = outcome(cluster, waiting)
    assert (event.path, event.rev, event.value) == ("/w/a", rev, b"z")


# -- failures ------------------------------------------------------------------------


def test_leader_loss_elects_a_new_leader_and_writes_resume(cluster):
    old = cluster.leader()
    survivor = followers(cluster)[0]
    outcome(cluster, survivor.node.set("/before", CLOBBER, b"1"))
    cluster.crash(old.name)
    started = cluster.clock.seconds()
    rev = outcome(cluster, survivor.node.set("/after", CLOBBER, b"2"), seconds=4.0)
    assert cluster.clock.seconds() - started < 2.5
    new = cluster.leader()
    assert new is not None and new.name != old.name
    assert outcome(cluster, survivor.node.get("/after")) == (b"2", rev)
    assert outcome(cluster, survivor.node.get("/before"))[0] == b"1"


def test_without_quorum_writes_and_reads_fail_within_the_bound(cluster):
    leader = cluster.leader()
    lonely = followers(cluster)[0]
    cluster.isolate(lonely.name)
    started = cluster.clock.seconds()
    err = failure(cluster, lonely.node.set("/nq", CLOBBER, b"x"), seconds=6.0)
    assert err.code == ErrCode.OTHER and err.detail.startswith("no quorum")
    assert 4.9 <= cluster.clock.seconds() - started <= 5.2
    err = failure(cluster, lonely.node.get("/nq"), seconds=6.0)
    assert err.detail.startswith("no quorum")
    # the majority side keeps working, and the lonely node catches up after healing
    rev = outcome(cluster, leader.node.set("/majority", CLOBBER, b"ok"), 3.0)
    cluster.heal()
    assert outcome(cluster, lonely.node.get("/majority"), 3.0) == (b"ok", rev)


def test_a_cut_off_leader_steps_down_and_completes_no_write(cluster):
    old = cluster.leader()
    cluster.isolate(old.name)
    write = old.node.set("/cut", CLOBBER, b"lost")
    run_until(cluster, lambda: old.driver.raft.role != Role.LEADER, 3.0)
    others = [m for m in cluster.members.values() if m is not old]
    rev = outcome(cluster, others[0].node.set("/majority", CLOBBER, b"x"), 3.0)
    err = failure(cluster, write, 6.0)
    assert err.detail.startswith("no quorum")
    cluster.heal()
    run_until(cluster, lambda: old.store.rev >= rev, 3.0)
    assert old.store.get("/cut", None) == (b"", 0)


# -- membership ----------------------------------------------------------------------


def attach(net, name, seed=10):
    member = net.add(name, (), seed=seed, start=False)
    for peer in VOTERS:
        member.add_known_peer(peer, net.endpoint(peer))
    member.start()
    return member


def test_attach_joins_as_learner_and_is_promoted_via_ctl_cal(cluster):
    n4 = attach(cluster, "n4")
    run_until(cluster, lambda: n4.bootstrap.phase == Phase.MEMBER)
    leader = cluster.leader()
    assert name_of(n4.driver.member_id) == "n4" and n4.driver.member_id != "n4"
    assert n4.driver.member_id in leader.driver.conf.learners
    rev = outcome(cluster, leader.node.set("/seen", CLOBBER, b"by n4"))
    assert outcome(cluster, n4.node.get("/seen")) == (b"by n4", rev)
    assert outcome(cluster, n4.node.set("/from-learner", CLOBBER, b"ok")) > rev
    # doozer's way: an operator writes the id into an empty slot
    outcome(cluster, leader.node.set("/ctl/cal/3", 0, b"n4"))
    run_until(cluster, lambda: n4.driver.member_id in leader.driver.conf.voters)
    assert len(leader.driver.conf.voters) == 4
    # deleting the slot demotes it to a learner again
    slot_rev = leader.store.get("/ctl/cal/3", None)[1]
    outcome(cluster, leader.node.delete("/ctl/cal/3", slot_rev))
    run_until(cluster, lambda: n4.driver.member_id in cluster.leader().driver.conf.learners)
    assert len(cluster.leader().driver.conf.voters) == 3


def test_a_learner_claims_an_empty_slot(cluster):
    n4 = attach(cluster, "n4")
    run_until(cluster, lambda: n4.bootstrap.phase == Phase.MEMBER)
    leader = cluster.leader()
    outcome(cluster, leader.node.set("/ctl/cal/3", 0, b""))
    run_until(cluster, lambda: n4.driver.member_id in leader.driver.conf.voters)
    assert leader.store.get("/ctl/cal/3", None)[0] == b"n4"


def test_restart_without_state_comes_back_as_a_learner_then_voter(cluster):
    victim = followers(cluster)[0]
    name = victim.name
    rev = outcome(cluster, victim.node.set("/kept", CLOBBER, b"yes"))
    cluster.crash(name)
    reborn = cluster.add(name, VOTERS, seed=99)
    run_until(cluster, lambda: reborn.bootstrap.phase != Phase.PROBING, 2.0)
    assert reborn.bootstrap.phase in (Phase.JOINING, Phase.MEMBER)
    assert reborn.driver.member_id != name  # a new life, never the old id
    leader = cluster.leader()
    run_until(cluster, lambda: reborn.driver.member_id in leader.driver.conf.members())
    # it was never a voter with lost state: first a learner, then promoted
    assert name not in leader.driver.conf.members()
    run_until(cluster, lambda: reborn.driver.member_id in leader.driver.conf.voters)
    assert outcome(cluster, reborn.node.get("/kept")) == (b"yes", rev)
    assert leader.store.get(f"/ctl/node/{name}/member", None)[0] == reborn.driver.member_id.encode()
    assert len(leader.driver.conf.voters) == 3


def test_timeout_demotes_a_silent_voter(net):
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i, timeout=2.0)
    run_until(net, lambda: net.leader() is not None and len(net.leader().membership.slots()) == 3)
    victim = followers(net)[0]
    net.crash(victim.name)
    leader = net.leader()
    run_until(net, lambda: victim.name not in leader.driver.conf.voters, 6.0)
    assert len(leader.driver.conf.voters) == 2
    assert sorted(name for name, _ in leader.membership.slots().values()) == sorted(
        set(VOTERS) - {victim.name})
    # the two survivors form the quorum now
    assert outcome(net, leader.node.set("/after-timeout", CLOBBER, b"ok"))


# -- the admin command's operations ---------------------------------------------------


class SyncClient:
    """The BlockingClient calls the admin module uses, served by a Node."""

    def __init__(self, net, node):
        self.net, self.node = net, node

    def walk(self, glob, rev=None, offset=0):
        return outcome(self.net, self.node.walk(glob, rev, offset))

    def get(self, path, rev=None):
        return outcome(self.net, self.node.get(path, rev))

    def set(self, path, rev, value):
        return outcome(self.net, self.node.set(path, rev, value))

    def delete(self, path, rev):
        return outcome(self.net, self.node.delete(path, rev))


def test_admin_promote_demote_remove(cluster):
    from doozertw.cluster import admin
    n4 = attach(cluster, "n4")
    run_until(cluster, lambda: n4.bootstrap.phase == Phase.MEMBER)
    client = SyncClient(cluster, followers(cluster)[0].node)
    assert admin.promote(client, "n4") == "/ctl/cal/3"
    assert admin.promote(client, "n4") == "/ctl/cal/3"  # idempotent
    run_until(cluster, lambda: n4.driver.member_id in cluster.leader().driver.conf.voters)
    assert "/ctl/cal/3 = n4" in admin.status(client)
    assert admin.demote(client, "n4") == ["/ctl/cal/3"]
    run_until(cluster, lambda: n4.driver.member_id in cluster.leader().driver.conf.learners)
    admin.remove(client, "n4")
    run_until(cluster, lambda: n4.driver.member_id not in cluster.leader().driver.conf.members())
    assert sorted(cluster.leader().driver.conf.voters) == list(VOTERS)
    # a slot freed by demotion is reused by the next promotion
    outcome(cluster, client.node.set("/ctl/cal/7", 0, b""))
    assert admin.promote(client, "n9") == "/ctl/cal/7"


# -- bootstrap decisions ------------------------------------------------------------------


def test_only_every_voter_fresh_founds_a_cluster(net):
    lonely = net.add("n1", VOTERS, seed=1)
    net.run(2.0)
    assert lonely.bootstrap.phase == Phase.PROBING and not lonely.driver.started
    # a fresh majority is not enough: the missing voter may hold the log
    second = net.add("n2", VOTERS, seed=2)
    net.run(2.0)
    assert not lonely.driver.started and not second.driver.started
    third = net.add("n3", VOTERS, seed=3)
    run_until(net, lambda: all(m.driver.started for m in (lonely, second, third)), 2.0)
    assert [m.driver.member_id for m in (lonely, second, third)] == ["n1", "n2", "n3"]
    run_until(net, lambda: net.leader() is not None)


def test_a_fresh_node_finding_a_member_joins_and_never_founds(net):
    founders = [net.add(n, VOTERS, seed=i) for i, n in enumerate(VOTERS, 1)]
    run_until(net, lambda: net.leader() is not None)
    net.crash("n3")  # its state is lost: it must not found a second cluster
    again = net.add("n3", VOTERS, seed=9)
    run_until(net, lambda: again.driver.member_id in net.leader().driver.conf.voters, 5.0)
    assert again.driver.member_id.startswith("n3~")
    assert founders[0].driver.member_id == "n1"
    assert "n3" not in net.leader().driver.conf.members()


def test_single_configured_voter_founds_at_once(net):
    alone = net.add("solo", ("solo",), seed=1)
    run_until(net, lambda: alone.driver.is_leader, 3.0)
    assert outcome(net, alone.node.set("/x", CLOBBER, b"1")) >= 1
    assert outcome(net, alone.node.get("/x"))[0] == b"1"


def test_compaction_and_a_learner_catching_up_from_a_snapshot(net):
    from doozertw.cluster.driver import Timing
    timing = Timing(compact_every=20)
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i, timing=timing)
    run_until(net, lambda: net.leader() is not None and len(net.leader().membership.slots()) == 3)
    leader = net.leader()
    for i in range(60):
        outcome(net, leader.node.set(f"/s/{i}", CLOBBER, b"%d" % i))
    assert leader.driver.storage.snapshot.index > 0
    assert leader.driver.raft.status().snapshot_index > 0  # the founding entries are gone
    n4 = net.add("n4", (), seed=7, timing=timing, start=False)
    for peer in VOTERS:
        n4.add_known_peer(peer, net.endpoint(peer))
    n4.start()
    run_until(net, lambda: n4.store.rev >= leader.store.rev and n4.bootstrap.phase == Phase.MEMBER)
    assert n4.driver.storage.snapshot.index > 0  # it was sent a snapshot
    assert n4.store.files(Glob("/s/*")) == leader.store.files(Glob("/s/*"))
    assert outcome(net, n4.node.get("/s/59"))[0] == b"59"


def test_a_write_lost_by_a_deposed_leader_is_proposed_again_exactly_once(cluster):
    old = cluster.leader()
    cluster.isolate(old.name)
    write = old.node.set("/retried", CLOBBER, b"once")
    cluster.run(0.05)
    placed = old.proposer._by_index  # appended locally, never committed
    assert len(placed) == 1
    others = [m for m in cluster.members.values() if m is not old]
    run_until(cluster, lambda: any(m.driver.is_leader for m in others), 3.0)
    outcome(cluster, others[0].node.set("/other", CLOBBER, b"x"), 2.0)
    cluster.heal()
    rev = outcome(cluster, write, 3.0)
    for member in cluster.members.values():
        run_until(cluster, lambda m=member: m.store.rev >= rev, 2.0)
        first = member.store.first_event(Glob("/retried"), 1)
        assert (first.rev, first.value) == (rev, b"once")  # applied exactly once


def test_a_stopping_leader_hands_over_without_an_election_timeout(cluster):
    old = cluster.leader()
    assert old.hand_over()
    cluster.run(0.05)  # one round trip, far below the election timeout
    new = cluster.leader()
    assert new is not None and new is not old
    assert outcome(cluster, new.node.set("/handed", CLOBBER, b"1"), 0.5)


@pytest.mark.parametrize("size", [5, 7])
def test_larger_clusters_survive_the_loss_of_a_minority(net, size):
    names = tuple(f"n{i}" for i in range(1, size + 1))
    for i, name in enumerate(names):
        net.add(name, names, seed=i)
    run_until(net, lambda: net.leader() is not None
              and len(net.leader().membership.slots()) == size)
    minority = (size - 1) // 2
    victims = [net.leader().name] + [n for n in names if n != net.leader().name][:minority - 1]
    for name in victims:
        net.crash(name)
    survivor = next(iter(net.members.values()))
    rev = outcome(net, survivor.node.set("/big", CLOBBER, b"ok"), 4.0)
    for member in net.members.values():
        assert outcome(net, member.node.get("/big"), 2.0) == (b"ok", rev)
    # one more loss is a majority: writes fail within the bound
    net.crash(next(n for n in net.members if n != survivor.name))
    err = failure(net, survivor.node.set("/big", CLOBBER, b"no"), 6.0)
    assert err.detail.startswith("no quorum")


def test_a_founder_whose_fresh_answer_was_lost_still_founds(net):
    first = net.add("n1", VOTERS, seed=1)
    net.add("n3", VOTERS, seed=3)
    net.run(0.5)
    # answers to n2 are lost: n1 and n3 found having counted n2 from its probe
    net.cut = {("n1", "n2"), ("n3", "n2")}
    second = net.add("n2", VOTERS, seed=2)
    run_until(net, lambda: first.driver.started, 2.0)
    assert not second.driver.started
    net.heal()
    run_until(net, lambda: second.driver.started, 2.0)
    assert second.driver.member_id == "n2"  # the founder id meant for it
    run_until(net, lambda: net.leader() is not None, 3.0)
    assert outcome(net, second.node.set("/two-of-three", CLOBBER, b"ok"), 2.0)


def test_a_later_life_of_a_counted_founder_joins_instead(net):
    first = net.add("n1", VOTERS, seed=1)
    net.add("n3", VOTERS, seed=3)
    net.run(0.5)
    net.cut = {("n1", "n2"), ("n3", "n2")}
    net.add("n2", VOTERS, seed=2)
    run_until(net, lambda: first.driver.started, 2.0)
    net.crash("n2")
    net.heal()
    again = net.add("n2", VOTERS, seed=3)  # another incarnation: must not take "n2"
    run_until(net, lambda: again.bootstrap.phase != Phase.PROBING, 2.0)
    assert again.driver.member_id != "n2"


def test_duplicated_payloads_never_apply_a_write_twice(cluster):
    cluster.duplicate = True
    follower = followers(cluster)[0]
    revs = [outcome(cluster, follower.node.set(f"/dup/{i}", CLOBBER, b"v"), 2.0)
            for i in range(5)]
    cluster.run(0.5)
    assert sum(m.driver.duplicates for m in cluster.members.values()) > 0
    for member in cluster.members.values():
        events = [member.store.first_event(Glob(f"/dup/{i}"), 1) for i in range(5)]
        assert [e.rev for e in events] == revs
        assert member.store.rev == cluster.leader().store.rev


def test_status_summarises_the_member(cluster):
    leader = cluster.leader()
    status = leader.status()
    assert status["role"] == "leader" and status["leader"] == leader.driver.member_id
    assert status["voters"] == list(VOTERS) and status["phase"] == "member"
    assert status["applied"] == status["commit"] > 0
    lonely = MemoryNetwork(cluster.clock).add("x", ("x", "y", "z"))
    assert lonely.status()["phase"] == "probing" and "role" not in lonely.status()


# -- wiring ------------------------------------------------------------------------


def test_the_node_is_built_with_its_cluster_view_and_raft_position(cluster):
    leader = cluster.leader()
    assert leader.node.cluster_status is leader.cluster_status
    index, term = leader.node.raft_position()
    assert index == leader.driver.applied and term == leader.driver.raft.term_at(index) > 0


def test_peer_stats_given_at_construction_reach_the_cluster_view(net):
    calls = []
    member = net.add("n1", ("n1",), peer_stats=lambda: calls.append(1) or {})
    run_until(net, lambda: member.driver.is_leader)
    member.cluster_status()
    assert calls


def test_dialed_peers_are_not_dialed_again_until_ctl_moves_them(net):
    member = net.add("n1", ("n1",), start=False)
    dials = []
    member.membership.add_peer = lambda name, endpoint: dials.append((name, endpoint))
    member.start(dialed_peers={"n1": "mem:n1", "n9": "mem:n9"})
    assert member.membership.known_peers == {"n9": "mem:n9"}
    run_until(net, lambda: member.driver.is_leader)
    outcome(net, member.node.set("/ctl/node/n9/peer", CLOBBER, b"mem:n9"))
    member.membership.run_once()
    assert dials == []
    outcome(net, member.node.set("/ctl/node/n9/peer", CLOBBER, b"mem:n9b"))
    member.membership.run_once()
    assert dials == [("n9", "mem:n9b")]


def test_a_late_client_address_is_published_for_a_member(cluster):
    member = followers(cluster)[0]
    member.set_client_addr("10.0.0.9:8046")
    assert member.bootstrap.client_addr == "10.0.0.9:8046"
    path = f"/ctl/node/{member.name}/addr"
    run_until(cluster, lambda: member.store.get(path, None)[0] == b"10.0.0.9:8046")
