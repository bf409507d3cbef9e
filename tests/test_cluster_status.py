"""The cluster status source (doozertw.cluster.status), /ctl/leader, proposal
latency and `doozer members`, on in-memory clusters and over TCP."""


import tempfile
import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, task
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from doozertw import config, tap
from doozertw.cluster.bootstrap import Phase
from doozertw.cluster.memnet import MemoryNetwork
from doozertw.cluster.status import ClusterStatus, RevisionIndex
from doozertw.errors import DoozerError
from doozertw.frontends.access import Secrets
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.wire import LENGTH, VERBS, Request, Response
from doozertw.testing.web import Client, make_site
from doozertw.limits import Limits
from doozertw.peer.transport import PeerStats
from doozertw.store import CLOBBER, Glob, Outcome, SetFile
from doozertw.testing.node_process import free_port
from doozertw.testing.polling import wait_until

VOTERS = ("n1", "n2", "n3")


# -- helpers -------------------------------------------------------------------------


def run_until(net, predicate, seconds=5.0):
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        net.run(0.01)
    assert predicate(), "condition not reached in time"


def outcome(net, d, seconds=2.0):
    box = []
    d.addBoth(box.append)
    run_until(net, lambda: bool(box), seconds)
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


@pytest.fixture
def cluster():
    net = MemoryNetwork(task.Clock())
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i)
    run_until(net, lambda: net.leader() is not None and all(
        len(m.membership.slots()) == 3 for m in net.members.values()))
    return net


def followers(net):
    return [m for m in net.members.values() if m is not net.leader()]


def attach(net, name, seed=10):
    member = net.add(name, (), seed=seed, start=False)
    for peer in VOTERS:
        member.add_known_peer(peer, net.endpoint(peer))
    member.start()
    return member


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def peer_stats(name, state="up", rtt=None):
    return PeerStats(name=name, endpoint=f"mem:{name}", state=state, queued_messages=0,
                     queued_bytes=0, sent_messages=0, sent_bytes=0, dropped=0,
                     received_messages=0, received_bytes=0, connects=1, failures=0,
                     rtt=rtt, inbound=False)


# -- RevisionIndex ---------------------------------------------------------------------


def test_revision_index_maps_log_indexes_to_store_revisions():
    index = RevisionIndex(keep=4)
    assert index.rev_at(0) is None and index.rev_at(1) is None
    index.record(1, None)                       # the leader's no-op
    index.record(2, Outcome(rev=1, event=object()))
    index.record(3, Outcome(rev=0, error=5))    # a failed write: no new revision
    assert [index.rev_at(i) for i in (0, 1, 2, 3)] == [0, 0, 1, 1]
    assert index.rev_at(4) is None              # not applied here yet
    index.record(4, Outcome(rev=2, event=object()))
    index.record(5, None)
    assert index.rev_at(1) is None              # slid out of the window
    assert [index.rev_at(i) for i in (2, 3, 4, 5)] == [1, 1, 2, 2]
    index.record(6, Outcome(rev=4, events=(object(), object())))  # a txn or a revoke
    assert index.rev_at(6) == 4


def test_revision_index_forgets_across_a_snapshot_gap():
    index = RevisionIndex()
    index.record(1, Outcome(rev=1, event=object()))
    index.record(50, None)                      # entries 2..49 came in a snapshot
    assert index.rev_at(1) is None and index.rev_at(50) is None
    index.record(51, Outcome(rev=30, event=object()))
    assert index.rev_at(51) == 30 and index.rev_at(50) is None


# -- the view on an in-memory cluster ---------------------------------------------------


def test_leader_view_names_roles_applied_and_quorum(cluster):
    leader = cluster.leader()
    rev = outcome(cluster, leader.node.set("/a", CLOBBER, b"1"))
    run_until(cluster, lambda: all(m.store.rev >= rev for m in cluster.members.values()))
    cluster.run(0.3)  # heartbeats carry the followers' match index back
    view = leader.node.cluster_status()
    assert view.self_name == leader.name and view.leader == leader.name
    assert view.name == "mem" and view.has_quorum and view.leader_changes == 1
    assert [m.name for m in view.members][0] == leader.name
    assert sorted(m.name for m in view.members) == list(VOTERS)
    roles = {m.name: m.role for m in view.members}
    assert roles == {m.name: "leader" if m is leader else "follower"
                     for m in cluster.members.values()}
    for m in view.members:
        assert m.healthy and m.term == view.term == leader.driver.raft.term
        assert m.applied == leader.store.rev  # followers: replicated through the leader's rev
        assert m.addr == f"{m.name}:8046"


def test_follower_view_marks_what_it_cannot_know(cluster):
    leader = cluster.leader()
    follower = followers(cluster)[0]
    view = follower.node.cluster_status()
    assert view.leader == leader.name and view.has_quorum
    me = view.member(follower.name)
    assert me.role == "follower" and me.applied == follower.store.rev and me.healthy
    assert view.member(leader.name).role == "leader" and view.member(leader.name).healthy
    other = next(m for m in view.members if m.name not in (leader.name, follower.name))
    assert other.applied is None                  # only the leader tracks replication
    assert other.healthy is False                 # followers never talk to each other
    # ... unless the peer transport says the link is up
    follower.cluster_status.peer_stats = lambda: {
        other.name: peer_stats(other.name, rtt=0.004),
        leader.name: peer_stats(leader.name, state="backing-off")}
    view = follower.node.cluster_status()
    assert view.member(other.name).healthy
    assert view.member(leader.name).healthy       # heard over Raft, whatever the link
    assert view.peer_rtt == ((other.name, 0.004),)
    assert view.to_json()["nodes"][2]["applied"] is None


def test_an_attached_node_is_a_learner_in_every_view(cluster):
    n4 = attach(cluster, "n4")
    run_until(cluster, lambda: n4.bootstrap.phase == Phase.MEMBER
              and n4.driver.leader is not None)
    leader = cluster.leader()
    run_until(cluster, lambda: leader.node.cluster_status().member("n4") is not None)
    assert leader.node.cluster_status().member("n4").role == "learner"
    view = n4.node.cluster_status()
    assert view.member("n4").role == "learner" and view.leader == leader.name
    assert view.has_quorum
    assert [m.name for m in view.members][-1] == "n4"  # voters first, then learners


def test_a_node_not_yet_in_a_cluster_describes_itself_only(cluster):
    lonely = MemoryNetwork(cluster.clock).add("x", ("x", "y", "z"))
    view = lonely.node.cluster_status()
    assert [m.name for m in view.members] == ["x"] and view.members[0].role == "probing"
    assert view.leader == "" and not view.has_quorum and view.term == 0


def test_a_leader_change_is_counted_and_named(cluster):
    old = cluster.leader()
    watcher = followers(cluster)[0]
    before = watcher.node.cluster_status()
    assert before.leader == old.name and before.leader_changes == 1
    cluster.isolate(old.name)
    run_until(cluster, lambda: any(m.driver.is_leader for m in cluster.members.values()
                                   if m is not old))
    new = next(m for m in cluster.members.values() if m is not old and m.driver.is_leader)
    run_until(cluster, lambda: watcher.driver.leader == new.driver.member_id)
    after = watcher.node.cluster_status()
    assert after.leader == new.name != old.name
    assert after.leader_changes == 2 and after.term > before.term
    assert after.member(new.name).role == "leader"


def test_quorum_is_lost_with_the_majority(cluster):
    leader = cluster.leader()
    survivor = followers(cluster)[0]
    for member in followers(cluster):
        if member is not survivor:
            cluster.crash(member.name)
    cluster.crash(leader.name)
    run_until(cluster, lambda: not survivor.node.cluster_status().has_quorum, 3.0)
    assert survivor.node.cluster_status().leader == ""
    # a leader cut off from both followers loses its quorum too
    net = MemoryNetwork(task.Clock())
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i)
    run_until(net, lambda: net.leader() is not None)
    cut = net.leader()
    assert cut.node.cluster_status().has_quorum
    net.isolate(cut.name)
    run_until(net, lambda: not cut.node.cluster_status().has_quorum, 3.0)


# -- /ctl/leader -----------------------------------------------------------------------------


def test_the_leader_writes_its_name_to_ctl_leader(cluster):
    leader = cluster.leader()
    run_until(cluster, lambda: all(m.store.get("/ctl/leader", None)[0] == leader.name.encode()
                                   for m in cluster.members.values()))
    rev = leader.store.get("/ctl/leader", None)[1]
    cluster.run(2.0)  # once per leadership, not periodically
    assert leader.store.get("/ctl/leader", None)[1] == rev
    cluster.isolate(leader.name)
    run_until(cluster, lambda: any(m.driver.is_leader for m in cluster.members.values()
                                   if m is not leader))
    new = next(m for m in cluster.members.values() if m is not leader and m.driver.is_leader)
    run_until(cluster, lambda: new.store.get("/ctl/leader", None)[0] == new.name.encode())
    cluster.heal()
    run_until(cluster, lambda: leader.store.get("/ctl/leader", None)[0] == new.name.encode())


def test_no_applied_revisions_are_written_periodically(cluster):
    rev = cluster.leader().store.rev
    cluster.run(15.0)
    assert cluster.leader().store.rev == rev
    assert not cluster.leader().store.files(Glob("/ctl/node/*/applied"))


# -- the web port on a clustered node ------------------------------------------------------------


def test_web_port_shows_the_cluster_and_readiness(cluster):
    leader = cluster.leader()
    follower = followers(cluster)[0]
    client = Client(make_site(follower.node))
    code, body = client.json("GET", "/v1/cluster")
    assert code == 200
    assert body["cluster"] == "mem" and body["self"] == follower.name
    assert body["leader"] == leader.name and body["has_quorum"] is True
    assert sorted(n["name"] for n in body["nodes"]) == list(VOTERS)
    assert client.call("GET", "/readyz")[::2] == (200, b"ok\n")
    code, health = client.json("GET", "/health")
    assert code == 200 and health["role"] == "follower" and health["leader"] == leader.name
    metrics = samples(client.call("GET", "/metrics")[2].decode())
    me = (("node", follower.name),)
    assert metrics[("doozer_leader_changes_total", me)] == 1
    assert metrics[("doozer_is_leader", me)] == 0 and metrics[("doozer_has_quorum", me)] == 1
    for member in list(cluster.members.values()):
        if member is not follower:
            cluster.crash(member.name)
    run_until(cluster, lambda: client.call("GET", "/readyz")[0] == 503, 3.0)
    code, health = client.json("GET", "/health")
    assert code == 503 and health["status"] == "unavailable" and health["leader"] == ""


class DoozerConnection:
    """One doozer-protocol connection to a node, in memory."""

    def __init__(self, node, clock):
        self.proto = DoozerProtocol(node, Secrets(), Limits(), clock)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def send(self, verb, tag, **fields):
        body = Request(tag=tag, verb=VERBS[verb], **fields).SerializeToString()
        self.proto.dataReceived(LENGTH.pack(len(body)) + body)

    def replies(self):
        data, out, pos = self.transport.value(), [], 0
        while pos < len(data):
            (length,) = LENGTH.unpack_from(data, pos)
            out.append(Response.FromString(data[pos + 4:pos + 4 + length]))
            pos += 4 + length
        return out


def test_proposal_latency_counts_doozer_protocol_writes_once(cluster):
    follower = followers(cluster)[0]
    site = make_site(follower.node)
    client = Client(site)
    conn = DoozerConnection(follower.node, cluster.clock)
    conn.send("SET", 1, path="/p/a", rev=-1, value=b"1")
    conn.send("SET", 2, path="/p/b", rev=0, value=b"2")
    conn.send("SET", 3, path="/p/a", rev=0, value=b"x")   # REV_MISMATCH: still a proposal
    run_until(cluster, lambda: len(conn.replies()) == 3)
    conn.send("DEL", 4, path="/p/b", rev=-1)
    run_until(cluster, lambda: len(conn.replies()) == 4)
    me = (("node", follower.name),)
    got = samples(client.call("GET", "/metrics")[2].decode())
    assert got[("doozer_proposal_latency_seconds_count", me)] == 4
    # forwarded to the leader over a 2 ms network: a real, positive latency
    assert got[("doozer_proposal_latency_seconds_sum", me)] > 4 * 0.002
    d = client.treq.request("PUT", "http://doozer.test/v1/keys/p/c", data=b"3")
    run_until(cluster, lambda: follower.store.get("/p/c", None)[1] > 0)
    client.treq.flush()
    assert d.called
    got = samples(client.call("GET", "/metrics")[2].decode())
    assert got[("doozer_proposal_latency_seconds_count", me)] == 5  # counted once


def test_a_failing_observer_does_not_break_writes(cluster):
    node = cluster.leader().node
    seen = []
    node.proposal_observers.extend([lambda s: 1 / 0, seen.append])
    assert outcome(cluster, node.set("/o", CLOBBER, b"1")) > 0
    assert len(seen) == 1 and seen[0] >= 0
    with pytest.raises(DoozerError):
        outcome(cluster, node.set("/o", 0, b"again"))
    assert len(seen) == 2


def test_a_status_source_needs_no_transport(cluster):
    member = cluster.leader()
    status = ClusterStatus(member, peer_stats=lambda: {"n2": peer_stats("n2", rtt=0.01)})
    assert status().peer_rtt == (("n2", 0.01),)
    assert status.leader_changes == 0  # counts only what it saw after it was made


# -- `doozer members` ------------------------------------------------------------------------


class StoreClient:
    """The three blocking-client calls read_members makes, answered from a Store."""

    def __init__(self, store):
        self.store = store

    def get(self, path, rev):
        return self.store.get(path, rev)

    def stat(self, path, rev):
        return self.store.stat(path, rev)

    def getdir_all(self, path, rev):
        names, offset = [], 0
        while True:
            try:
                names.append(self.store.getdir(path, rev, offset))
            except Exception:
                return names
            offset += 1


def test_members_reads_what_ctl_honestly_holds(cluster):
    from doozertw.cli import read_members

    leader = cluster.leader()
    run_until(cluster, lambda: leader.store.get("/ctl/leader", None)[1] > 0)
    got = read_members(StoreClient(leader.store), None)
    assert got["cluster"] == "mem" and got["leader"] == leader.name
    assert [(n["id"], n["role"], n["applied"]) for n in got["nodes"]] == [
        (name, "voter", None) for name in VOTERS]
    # a voter slot naming a node that never described itself still shows
    outcome(cluster, leader.node.set("/ctl/cal/3", 0, b"n7"))
    got = read_members(StoreClient(leader.store), None)
    assert got["nodes"][-1] == {"id": "n7", "role": "voter", "addr": None, "applied": None}
    # before any slot exists, nobody is called a learner
    lonely = MemoryNetwork(task.Clock()).add("x", ("x", "y", "z"))
    lonely.store.apply(SetFile("/ctl/node/x/addr", CLOBBER, b"x:1"))
    got = read_members(StoreClient(lonely.store), None)
    assert got["leader"] is None and got["nodes"] == [
        {"id": "x", "role": None, "addr": "x:1", "applied": None}]


# -- over TCP: `doozer members` ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_doozer_members_and_peer_rtt_over_tcp():
    from doozertw.testing.servers import in_thread, run_cli

    nodes = {name: {"listen": f"tcp:{free_port()}:interface=127.0.0.1", "web": "none",
                    "peer_listen": f"tcp:{free_port()}:interface=127.0.0.1"}
             for name in VOTERS}
    from doozertw.testing.cluster_harness import write_peer_secret
    data_dir = tempfile.mkdtemp(prefix="doozer-status-")
    cluster = config.parse({"cluster": "tcp-status", "nodes": nodes, "data_dir": data_dir,
                            "peer_secret_file": write_peer_secret(data_dir)})
    services = {}
    try:
        for name, me in cluster.nodes.items():
            node, top = tap.build(cluster, me, reactor)
            top.startService()
            services[name] = (node, list(top)[0], top)
        members = {name: svc.member for name, (_, svc, _) in services.items()}
        await wait_until(lambda: any(m.driver.is_leader for m in members.values()))
        leader = next(n for n, m in members.items() if m.driver.is_leader)
        node1 = services["n1"][0]
        await wait_until(lambda: node1.store.get("/ctl/leader", None)[0] == leader.encode()
                         and len(node1.store.files(Glob("/ctl/node/*/addr"))) == 3
                         and len(node1.store.files(Glob("/ctl/cal/*"))) == 3)
        uri = "doozer:?ca=127.0.0.1:" + cluster.nodes["n1"].listen.split(":")[1]
        status, out, err = await in_thread(run_cli, ["members"], b"", uri)
        assert (status, err) == (0, "")
        lines = out.decode().splitlines()
        assert lines[:2] == ["cluster tcp-status", f"leader {leader}"]
        rows = [line.split() for line in lines[2:]]
        assert [r[0] for r in rows] == list(VOTERS)
        assert all(r[1] == "voter" and r[3] == "-" for r in rows), lines
        # the live view: real link states and round trips from the PeerTransport
        await wait_until(lambda: len(node1.cluster_status().peer_rtt) == 2)
        view = node1.cluster_status()
        assert {name for name, _ in view.peer_rtt} == {"n2", "n3"}
        assert all(0 <= rtt < 1 for _, rtt in view.peer_rtt)
        assert view.leader == leader and view.has_quorum
        assert all(m.healthy for m in view.members)
    finally:
        for _, _, top in services.values():
            await top.stopService()


# -- a node alone ------------------------------------------------------------------------------


def test_a_node_alone_names_itself_leader_and_times_writes_on_its_clock():
    from doozertw.node import Node

    clock = task.Clock()
    node = Node(name="solo", reactor=clock)
    seen = []
    node.proposal_observers.append(seen.append)
    node.describe_self("a:1", hostname="h", voter_slot=0)
    assert node.store.get("/ctl/leader", None)[0] == b"solo"
    assert node.store.get("/ctl/cal/0", None)[0] == b"solo"
    assert len(seen) == 6 and set(seen) == {0.0}  # applied at once: no time passed
    other = Node(name="member")
    other.describe_self("a:1", hostname="h")
    assert other.store.get("/ctl/leader", None) == (b"", 0)


def test_latency_is_measured_on_the_injected_clock_for_errors_too():
    from twisted.internet import defer

    from doozertw.node import Node
    from doozertw.store import Store

    clock, store = task.Clock(), Store()

    class SlowProposer:
        def propose(self, mutation):
            d = defer.Deferred()
            clock.callLater(0.25, lambda: d.callback(store.apply(mutation)))
            return d

    node = Node(name="slow", store=store, proposer=SlowProposer(), reactor=clock)
    seen, results = [], []
    node.proposal_observers.append(seen.append)
    node.set("/k", 0, b"1").addBoth(results.append)
    clock.advance(0.25)
    node.set("/k", 0, b"2").addBoth(results.append)
    clock.advance(0.1)
    assert len(seen) == 1  # not yet decided: nothing observed
    clock.advance(0.15)
    assert seen == [0.25, 0.25]
    assert results[0] == 1 and isinstance(results[1].value, DoozerError)
