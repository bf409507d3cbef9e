"""kvlab, the worked example in examples/kvlab (README.md there).

Unmarked: the pure parts (layout, consistent hashing, primary choice, the
line protocol and store) and the line server/client over StringTransport
and task.Clock. Marked ``e2e``: a short run of ``run_demo`` (a 3-node
doozertw cluster, 2 coordinators, 2 groups of 2 data nodes, a client),
which kills the master and a primary and checks the takeover.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)     # examples/ is not part of the installed package

from examples.kvlab import kvproto, layout  # noqa: E402
from examples.kvlab.hashring import EmptyRing, HashRing  # noqa: E402
from examples.kvlab.layout import Primary  # noqa: E402
from examples.kvlab.lineclient import LineClient, LinePool, LinkError  # noqa: E402
from examples.kvlab.placement import (  # noqa: E402
    Assign, Clear, FileView, Member, choose_primary, plan, read_state)
from examples.kvlab.server import KVServer, Replica  # noqa: E402
from doozertw.testing.memclient import settle  # noqa: E402

KEYS = [f"key-{i}" for i in range(2000)]
DOOZER = "127.0.0.1:8046"


# --- consistent hashing -------------------------------------------------------

def test_ring_routes_every_key_to_a_group_deterministically():
    ring = HashRing(["g1", "g2", "g3"])
    again = HashRing(["g3", "g1", "g2", "g1"])
    assert [ring.route(k) for k in KEYS] == [again.route(k) for k in KEYS]
    counts = Counter(ring.route(k) for k in KEYS)
    assert set(counts) == {"g1", "g2", "g3"}
    assert min(counts.values()) > len(KEYS) / 3 * 0.6      # roughly balanced


def test_removing_a_group_moves_only_its_keys():
    before = HashRing(["g1", "g2", "g3"])
    after = HashRing(["g1", "g3"])
    moved = [k for k in KEYS if before.route(k) != after.route(k)]
    assert moved and all(before.route(k) == "g2" for k in moved)
    assert {before.route(k) for k in KEYS} - {after.route(k) for k in KEYS} == {"g2"}


def test_adding_a_group_takes_keys_only_for_itself():
    before = HashRing(["g1", "g2"])
    after = HashRing(["g1", "g2", "g3"])
    moved = [k for k in KEYS if before.route(k) != after.route(k)]
    assert moved and all(after.route(k) == "g3" for k in moved)


def test_empty_ring_and_bad_replicas():
    with pytest.raises(EmptyRing):
        HashRing([]).route("k")
    with pytest.raises(ValueError):
        HashRing(["g1"], replicas=0)
    assert HashRing(["only"]).route("anything") == "only"


# --- layout -------------------------------------------------------------------

def test_paths_and_parsing():
    assert layout.node_path("g1", "d1") == "/kvlab/groups/g1/nodes/d1"
    assert layout.primary_path("g1") == "/kvlab/groups/g1/primary"
    assert layout.parse_path("/kvlab/groups/g1/nodes/d1") == layout.Where("g1", "d1")
    assert layout.parse_path("/kvlab/groups/g1/primary") == layout.Where("g1", None)
    for other in ["/kvlab/groups/g1", "/kvlab/groups/g1/nodes", "/kvlab/groups/g1/x/d1",
                  "/elsewhere/groups/g1/primary", "/kvlab/groups/g_1/primary"]:
        assert layout.parse_path(other) is None
    for bad in ["", "a/b", "x" * 65, "..", "a b", "g_1"]:
        with pytest.raises(ValueError):
            layout.check_name(bad)


def test_primary_values_are_checked():
    value = layout.encode_primary("d1", "127.0.0.1:9000")
    assert layout.decode_primary(value, 7) == Primary("d1", "127.0.0.1:9000", 7)
    for junk in [b"", b"d1", b"d1 nowhere", b"d1 h:99999", b"d/1 h:1", b"\xff h:1",
                 b"d1 h:1 extra"]:
        assert layout.decode_primary(junk, 7) is None
    with pytest.raises(ValueError):
        layout.encode_primary("d1", "no-port")


# --- primary choice -----------------------------------------------------------

A, B, C = Member("d1", "h:1", 10), Member("d2", "h:2", 5), Member("d3", "h:3", 5)


def test_choose_primary_keeps_a_live_primary_else_the_lowest():
    assert choose_primary("d1", [A, B]) == A                # sticky while it lives
    assert choose_primary("gone", [A, B, C]) == B           # lowest revision, then name
    assert choose_primary(None, [C, A]) == C
    assert choose_primary("d1", []) is None


def test_plan_assigns_replaces_and_clears():
    primaries = {"g1": Primary("d1", "h:1", 20), "g2": Primary("x", "h:9", 21),
                 "g3": Primary("d9", "h:9", 22)}
    members = {"g1": [A, B], "g2": [A, C], "g4": [B]}
    assert plan(members, primaries) == [
        Assign("g2", C, 21),           # its primary vanished: the lowest live one
        Clear("g3", 22),               # nobody left
        Assign("g4", B, 0),            # new group
    ]
    # Nothing to do once the files say what they should.
    settled = {"g1": primaries["g1"], "g2": Primary("d3", "h:3", 30),
               "g4": Primary("d2", "h:2", 31)}
    assert plan({"g1": [A, B], "g2": [A, C], "g4": [B]}, settled) == []


def test_plan_rewrites_a_primary_whose_address_changed():
    moved = Member("d1", "h:100", 40)
    assert plan({"g1": [moved]}, {"g1": Primary("d1", "h:1", 20)}) == [Assign("g1", moved, 20)]


def test_read_state_ignores_junk_and_keeps_bad_primary_files():
    files = [FileView("/kvlab/groups/g1/nodes/d1", b"127.0.0.1:1", 3),
             FileView("/kvlab/groups/g1/nodes/d2", b"not an address", 4),
             FileView("/kvlab/groups/g1/primary", b"garbage", 5),
             FileView("/kvlab/groups/g2/primary", b"d7 127.0.0.1:7", 6),
             FileView("/kvlab/groups/g2/other", b"x", 7),
             FileView("/kvlab/unrelated", b"x", 8)]
    members, primaries = read_state(files)
    assert members == {"g1": [Member("d1", "127.0.0.1:1", 3)]}
    assert primaries == {"g1": Primary("", "", 5), "g2": Primary("d7", "127.0.0.1:7", 6)}
    assert plan(members, primaries) == [Assign("g1", Member("d1", "127.0.0.1:1", 3), 5),
                                        Clear("g2", 6)]


# --- line protocol ------------------------------------------------------------

def test_parse_requests():
    P = kvproto.parse_request
    assert P(b"GET a/b:c") == kvproto.Get("a/b:c")
    assert P(b"PUT k hello world") == kvproto.Put("k", b"hello world")
    assert P(b"PUT k") == kvproto.Put("k", b"")
    assert P(b"REPL 12 k v") == kvproto.Repl(12, "k", b"v")
    assert P(b"ROLE") == kvproto.Role()
    for request in [kvproto.Get("k"), kvproto.Put("k", b"v v"), kvproto.Repl(3, "k", b""),
                    kvproto.Role()]:
        assert P(kvproto.encode_request(request)) == request


@pytest.mark.parametrize("line", [
    b"", b"get k", b"GET", b"GET " + b"k" * 129, b"GET k k", b"PUT k \x00",
    b"PUT k " + b"v" * 1025, b"REPL x k v", b"REPL -1 k v", b"REPL 1" + b"0" * 20 + b" k v",
    b"ROLE x", b"DROP all", b"PUT \xff v"])
def test_bad_requests_are_refused(line):
    assert isinstance(kvproto.parse_request(line), kvproto.BadRequest)


def test_store_is_bounded_and_fenced():
    store = kvproto.KVStore(max_keys=2)
    assert store.put("a", b"1") and store.put("b", b"2")
    assert not store.put("c", b"3") and store.get("c") is None
    assert store.put("a", b"again")                         # an old key is fine
    assert store.replicate(5, "a", b"x") == b"OK" and store.epoch == 5
    assert store.replicate(4, "a", b"old") == b"ERR STALE 5"
    assert store.get("a") == b"x"
    assert store.replicate(6, "z", b"new") == b"ERR FULL"


# --- the data node's server and the line client --------------------------------

class FakeLinks:
    """``send`` for a Replica: records requests; answers fire by hand."""

    def __init__(self):
        self.sent: list[tuple[str, kvproto.Request, defer.Deferred]] = []

    def __call__(self, addr, request):
        d = defer.Deferred()
        self.sent.append((addr, request, d))
        return d


def serve(replica):
    proto = KVServer(replica)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def lines(transport):
    out = transport.value().split(b"\n")
    transport.clear()
    return [line for line in out if line]


def test_secondary_refuses_puts_and_applies_replication():
    replica = Replica("g1", "d2", FakeLinks())
    replica.set_primary(Primary("d1", "h:1", 9))
    proto, transport = serve(replica)
    proto.dataReceived(b"PUT k v\r\nREPL 9 k v1\nGET k\nREPL 8 k old\nGET nope\nROLE\n")
    assert lines(transport) == [b"ERR NOT_PRIMARY d1", b"OK", b"VALUE v1", b"ERR STALE 9",
                                b"MISSING", b"ROLE g1 d2 secondary 9"]


def test_primary_replicates_and_answers_in_order():
    links = FakeLinks()
    replica = Replica("g1", "d1", links)
    replica.set_members({"d1": "h:1", "d2": "h:2", "d3": "h:3"})
    replica.set_primary(Primary("d1", "h:1", 4))
    proto, transport = serve(replica)
    proto.dataReceived(b"PUT k v\nGET k\n")
    assert lines(transport) == []                # the GET waits behind the PUT
    assert transport.producerState == "paused"   # and so does the socket: bounded
    assert [(a, r) for a, r, _ in links.sent] == [
        ("h:2", kvproto.Repl(4, "k", b"v")), ("h:3", kvproto.Repl(4, "k", b"v"))]
    links.sent[0][2].callback(kvproto.parse_reply(b"OK"))
    links.sent[1][2].errback(LinkError("down"))
    assert lines(transport) == [b"OK 1", b"VALUE v"]
    assert transport.producerState == "producing"


def test_server_refuses_garbage_and_drops_long_lines():
    proto, transport = serve(Replica("g1", "d1", FakeLinks()))
    proto.dataReceived(b"HELLO\n")
    assert lines(transport) == [b"ERR BAD_REQUEST unknown verb"]
    proto.dataReceived(b"PUT k " + b"v" * (kvproto.MAX_LINE + 10))
    assert lines(transport) == [b"ERR BAD_REQUEST line too long"]
    assert transport.disconnecting


def test_line_client_matches_answers_in_order_and_fails_pending_on_loss():
    client = LineClient()
    transport = StringTransport()
    client.makeConnection(transport)
    first = client.request(kvproto.Get("a"))
    second = client.request(kvproto.Put("b", b"2"))
    assert transport.value() == b"GET a\nPUT b 2\n"
    client.dataReceived(b"VALUE 1\r\n")
    assert first.result == kvproto.Reply("VALUE", b"1")
    client.connectionLost(None)
    failures = []
    second.addErrback(failures.append)
    assert failures and failures[0].check(LinkError)
    late = []
    client.request(kvproto.Role()).addErrback(late.append)
    assert late and late[0].check(LinkError)


def test_line_client_drops_a_server_that_answers_unasked():
    client = LineClient()
    transport = StringTransport()
    client.makeConnection(transport)
    client.dataReceived(b"OK\n")
    assert transport.disconnecting


def test_pool_connects_once_times_out_and_reconnects():
    clock = Clock()
    made: list[tuple[str, defer.Deferred]] = []

    def connect(addr):
        d = defer.Deferred()
        made.append((addr, d))
        return d

    pool = LinePool(clock, connect, timeout=2.0)
    a = pool.request("h:1", kvproto.Get("a"))
    b = pool.request("h:1", kvproto.Get("b"))
    assert len(made) == 1                                  # one connection per address
    client = LineClient()
    transport = StringTransport()
    client.makeConnection(transport)
    made[0][1].callback(client)
    client.dataReceived(b"MISSING\nVALUE x\n")
    assert a.result.kind == "MISSING" and b.result == kvproto.Reply("VALUE", b"x")
    slow = pool.request("h:1", kvproto.Get("c"))
    errors = []
    slow.addErrback(errors.append)
    clock.advance(2.5)
    assert errors and errors[0].check(LinkError) and transport.disconnecting
    pool.request("h:1", kvproto.Get("d")).addErrback(lambda f: None)
    assert len(made) == 2                                  # a fresh connection
    refused = []
    made[1][1].errback(ConnectionRefusedError())
    assert len(made) == 2
    pool.request("h:2", kvproto.Get("e")).addErrback(refused.append)
    made[2][1].errback(ConnectionRefusedError("nope"))
    assert refused and refused[0].check(LinkError)
    assert clock.getDelayedCalls() == [] or all(not c.active() for c in clock.getDelayedCalls())


# --- the master and the client on a real node, in memory -----------------------



@pytest.fixture
def net():
    """One in-process Node at DOOZER, over iosim pumps on a task.Clock."""
    from doozertw.node import Node
    from doozertw.store import Store
    from doozertw.testing.memclient import MemNet

    clock = Clock()
    net = MemNet(clock)
    net.servers[DOOZER] = Node("a", store=Store(), reactor=clock)
    return net




def doozer(net):
    from doozertw.client import DoozerClient
    return DoozerClient([DOOZER], reactor=net.clock, connector=net.connector)


def primary_of(net, client, group):
    value, rev = settle(net, client.get(layout.primary_path(group)))
    return layout.decode_primary(value, rev) if rev else None


def test_master_places_primaries_and_a_deposed_master_writes_nothing(net):
    from doozertw.client import Compare
    from examples.kvlab.coordinator import Master

    client = doozer(net)
    fence_rev = settle(net, client.set(layout.MASTER + "/1-1", 0, b"c1"))
    for node, port in [("d2", 2), ("d1", 1)]:
        settle(net, client.set(layout.node_path("g1", node), 0, f"127.0.0.1:{port}"))
    master = Master(client, "c1", Compare(layout.MASTER + "/1-1", rev=fence_rev))
    settle(net, master.start())
    net.run(0.5)
    first = primary_of(net, client, "g1")
    assert (first.node, first.addr) == ("d2", "127.0.0.1:2")    # the oldest registration
    settle(net, client.delete(layout.node_path("g1", "d2"), -1))     # d2 died
    net.run(0.5)
    second = primary_of(net, client, "g1")
    assert second.node == "d1" and second.epoch > first.epoch
    settle(net, client.delete(layout.node_path("g1", "d1"), -1))     # nobody left
    net.run(0.5)
    assert primary_of(net, client, "g1") is None
    # The master loses its election file: it must not place g2's primary.
    settle(net, client.delete(layout.MASTER + "/1-1", -1))
    settle(net, client.set(layout.node_path("g2", "d3"), 0, b"127.0.0.1:3"))
    net.run(0.5)
    assert primary_of(net, client, "g2") is None
    assert master.deposed.called


def test_read_groups_uses_registrations_with_revisions_and_skips_junk(net):
    from examples.kvlab.coordinator import read_groups

    client = doozer(net)
    assert settle(net, read_groups(client, settle(net, client.rev()))) == []   # no groups yet
    r1 = settle(net, client.set(layout.node_path("g1", "d1"), 0, b"127.0.0.1:1"))
    p1 = settle(net, client.set(layout.primary_path("g1"), 0, b"d1 127.0.0.1:1"))
    settle(net, client.set("/kvlab/groups/bad_name/nodes/d9", 0, b"127.0.0.1:9"))
    settle(net, client.set("/kvlab/groups/g2/primary/x", 0, b"a directory"))
    r3 = settle(net, client.set(layout.node_path("g2", "d3"), 0, b"127.0.0.1:3"))
    rev = settle(net, client.rev())
    settle(net, client.delete(layout.node_path("g1", "d1"), -1))    # after the read rev
    files = settle(net, read_groups(client, rev))
    assert sorted(files, key=lambda f: f.path) == [
        FileView(layout.node_path("g1", "d1"), b"127.0.0.1:1", r1),
        FileView(layout.primary_path("g1"), b"d1 127.0.0.1:1", p1),
        FileView(layout.node_path("g2", "d3"), b"127.0.0.1:3", r3)]


class FakePool:
    """A LinePool stand-in: answers from ``answers[addr]`` (a Reply, or an
    exception to fail with) and records who was asked."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def request(self, addr, request):
        self.asked.append((addr, request))
        answer = self.answers[addr]
        return defer.fail(answer) if isinstance(answer, Exception) else defer.succeed(answer)

    def close(self):
        pass


def test_client_routes_by_primary_and_follows_a_takeover(net):
    from examples.kvlab.kvclient import KVClient

    client = doozer(net)
    settle(net, client.set(layout.MASTER + "/1-1", 0, b"c1"))
    settle(net, client.set(layout.primary_path("g1"), 0, layout.encode_primary("d1", "h:1")))
    pool = FakePool({"h:1": kvproto.parse_reply(b"OK 1"),
                     "h:2": kvproto.parse_reply(b"OK 0")})
    seen = []
    kv = KVClient(net.clock, client, pool, deadline=10.0, poll=0.5,
                  on_change=lambda kind, what: seen.append((kind, what)))
    settle(net, kv.start())
    net.flush()
    assert kv.master == "c1" and ("master", "c1") in seen
    assert settle(net, kv.put("k", b"v")) == ("g1", "d1", 1)
    # d1 dies: the put waits and retries until the master names d2.
    pool.answers["h:1"] = LinkError("refused")
    out = []
    defer.ensureDeferred(kv.put("k2", b"v2")).addBoth(out.append)
    net.run(1.0)
    assert out == [] and len([a for a, _ in pool.asked if a == "h:1"]) >= 2
    settle(net, client.set(layout.primary_path("g1"), -1, layout.encode_primary("d2", "h:2")))
    net.run(0.1)
    assert out == [("g1", "d2", 0)] and kv.primaries["g1"].node == "d2"
    # A refusal that waiting cannot fix fails at once; no primary at all times out.
    pool.answers["h:2"] = kvproto.parse_reply(b"ERR FULL")
    with pytest.raises(Exception, match="FULL"):
        settle(net, kv.put("k3", b"v"))
    settle(net, client.delete(layout.primary_path("g1"), -1))
    failed = []
    defer.ensureDeferred(kv.get("k")).addErrback(failed.append)
    net.run(11.0, step=0.5)
    assert failed and "no live group" in str(failed[0].value)
    kv.stop()


def test_txn_for_fences_on_the_election_file_and_what_was_read():
    from doozertw.client import Compare, DeleteFile, SetFile
    from examples.kvlab.coordinator import txn_for

    fence = Compare("/kvlab/master/7-1", rev=3)
    compares, success = txn_for(Assign("g1", Member("d2", "h:2", 9), 5), fence)
    assert compares == [fence, Compare("/kvlab/groups/g1/primary", rev=5),
                        Compare("/kvlab/groups/g1/nodes/d2", rev=9)]
    assert success == [SetFile("/kvlab/groups/g1/primary", 5, b"d2 h:2")]
    compares, success = txn_for(Clear("g1", 5), fence)
    assert compares == [fence, Compare("/kvlab/groups/g1/primary", rev=5)]
    assert success == [DeleteFile("/kvlab/groups/g1/primary", 5)]


# --- the demo, end to end -------------------------------------------------------

def run_demo(directory, *options, timeout=90):
    """(exit status, output) of run_demo.py on fresh free ports; the demo and
    every process it started are killed if it outlives ``timeout``."""
    import signal
    import subprocess

    from doozertw.testing.node_process import free_ports

    ports = ",".join(str(p) for p in free_ports(10))
    script = os.path.join(ROOT, "examples", "kvlab", "run_demo.py")
    demo = subprocess.Popen(
        [sys.executable, script, "--dir", str(directory), "--ports", ports, *options],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)         # its children too can be killed as a group
    try:
        story, _ = demo.communicate(timeout=timeout)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    return demo.returncode, story


@pytest.mark.e2e
def test_demo_survives_killing_the_master_and_a_primary(tmp_path):
    status, story = run_demo(tmp_path, "--bound", "15")
    assert status == 0, story
    assert "SUCCESS" in story and "Unhandled error" not in story, story
    takeover = next(line for line in story.splitlines() if "takeover: master" in line)
    # "takeover: master c1 -> c2, primary of g1 d2 -> d1 (epoch 27 -> 34) ..."
    words = takeover.split()
    old_master = words[words.index("master") + 1]
    new_master = words[words.index("master") + 3].rstrip(",")
    assert {old_master, new_master} == {"c1", "c2"}
    assert "client: all 13 keys read back" in story
    # The survivor, once master, placed g1's new primary.
    assert any(f"MASTER {new_master}: primary of g1" in line
               for line in story.splitlines()), story


@pytest.mark.e2e
def test_demo_fails_when_the_takeover_misses_its_bound(tmp_path):
    # A takeover waits for the dead processes' leases (3 s): 1 s is too short.
    status, story = run_demo(tmp_path, "--bound", "1")
    assert status == 1, story
    assert "FAILED" in story and "SUCCESS" not in story, story
