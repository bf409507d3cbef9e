"""Leases and transactions in the Python clients (doozertw.client).

The Twisted client runs in memory (iosim pumps on a Clock) against real
DoozerProtocols and Nodes; the blocking client over TCP against in-process
servers (doozertw.testing.servers). Failover: keep-alives and lease reads
are sent again after a lost connection, grants, revokes and TXNs fail with
ConnectionLost (they may have been applied).
"""

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock

from doozertw.client import (
    BlockingClient, Compare, ConnectionLost, DeleteFile, DoozerClient, DoozerError, ErrCode,
    LeaseInfo, SetFile, TxnResult, call)
from doozertw.client import plans
from doozertw.frontends.doozer_ext import PAGE_ITEMS
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.memclient import MemNet
from doozertw.testing.servers import in_thread, start_servers, stop_all
from doozertw.wire import VERBS, Request

A, B = "10.0.0.1:8046", "10.0.0.2:8046"


# -- the pure core ----------------------------------------------------------------


@pytest.mark.parametrize("verb, retriable", [
    ("LEASE_KEEPALIVE", True), ("LEASE_TTL", True), ("LEASE_LIST", True),
    ("LEASE_GRANT", False), ("LEASE_REVOKE", False), ("TXN", False), ("SET", False),
    ("GET", True),
])
def test_which_verbs_are_sent_again(verb, retriable):
    assert call(verb).retriable is retriable


def test_txn_call_encodes_compares_and_ops():
    c = call("TXN", compares=[Compare("/a", rev=3), Compare("/b", value=b"v")],
             success=[SetFile("/a", 3, b"x", lease=9), DeleteFile("/b", -1)],
             failure=[SetFile("/c", -1, b"")])
    request = Request.FromString(c.encode(5)[4:])
    assert request.tag == 5 and request.verb == VERBS["TXN"]
    assert [(x.path, x.HasField("rev"), x.rev, x.HasField("value"), x.value)
            for x in request.compares] == [("/a", True, 3, False, b""),
                                           ("/b", False, 0, True, b"v")]
    assert [(o.verb, o.path, o.rev, o.value, o.lease) for o in request.success] == [
        (VERBS["SET"], "/a", 3, b"x", 9), (VERBS["DEL"], "/b", -1, b"", 0)]
    assert request.success[0].HasField("lease")
    assert not request.success[1].HasField("lease")
    assert [(o.verb, o.path) for o in request.failure] == [(VERBS["SET"], "/c")]


def test_txn_call_refuses_what_is_not_an_op():
    with pytest.raises(TypeError):
        call("TXN", success=[("/a", 0, b"x")])
    with pytest.raises(TypeError):
        call("TXN", compares=[SetFile("/a", 0, b"")])


def test_lease_ttl_plan_pages_by_path():
    plan = plans.lease_ttl(7)
    first = next(plan)
    assert [(c.verb, c.lease, c.path) for c in first] == [("LEASE_TTL", 7, None)]
    second = plan.send([(LeaseInfo(7, 10, 9.0, ("/a", "/b")), True)])
    assert [(c.verb, c.lease, c.path) for c in second] == [("LEASE_TTL", 7, "/b")]
    with pytest.raises(StopIteration) as stop:
        plan.send([(LeaseInfo(7, 10, 8.0, ("/c",)), False)])
    assert stop.value.value == LeaseInfo(7, 10, 9.0, ("/a", "/b", "/c"))


def test_leases_plan_pages_by_id_and_raises_errors():
    plan = plans.leases()
    assert next(plan)[0].lease == 0
    assert plan.send([([LeaseInfo(3, 5, 5.0)], True)])[0].lease == 3
    with pytest.raises(StopIteration) as stop:
        plan.send([([], False)])
    assert stop.value.value == [LeaseInfo(3, 5, 5.0)]
    plan = plans.leases()
    next(plan)
    with pytest.raises(DoozerError):
        plan.send([DoozerError(ErrCode.OTHER, "permission denied")])


# -- the Twisted client, in memory -------------------------------------------------------


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def net(clock):
    net = MemNet(clock)
    node = Node("a", store=Store(), reactor=clock)
    net.servers[A] = net.servers[B] = node      # one node reachable at two addresses
    return net


def settle(net, d):
    net.flush()
    out = []
    d.addBoth(out.append)
    net.flush()
    assert out, "deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def twisted_client(net, clock):
    return DoozerClient([A, B], reactor=clock, connector=net.connector, suspend_timeout=5.0)


def test_twisted_lease_verbs(net, clock):
    client = twisted_client(net, clock)
    info = settle(net, client.grant_lease(10))
    assert isinstance(info, LeaseInfo) and info.ttl >= 10 and info.paths == ()
    assert settle(net, client.grant_lease(20, id=99)).id == 99
    with pytest.raises(DoozerError) as refused:
        settle(net, client.grant_lease(20, id=99))
    assert refused.value.code == ErrCode.REV_MISMATCH
    rev = settle(net, client.set("/svc/a", 0, b"up", lease=info.id))
    assert settle(net, client.get("/svc/a")) == (b"up", rev)
    clock.advance(info.ttl * 0.7)
    assert settle(net, client.keepalive(info.id)).remaining == pytest.approx(info.ttl)
    clock.advance(info.ttl * 0.7)
    got = settle(net, client.lease_ttl(info.id))
    assert (got.id, got.ttl, got.paths) == (info.id, info.ttl, ("/svc/a",))
    assert [x.id for x in settle(net, client.leases())] == [info.id, 99]
    revoked = settle(net, client.revoke_lease(info.id))
    assert settle(net, client.get("/svc/a")) == (b"", 0) and revoked >= rev + 1
    with pytest.raises(DoozerError) as gone:
        settle(net, client.keepalive(info.id))
    assert gone.value.code == ErrCode.NOENT


def test_twisted_txn(net, clock):
    client = twisted_client(net, clock)
    rev = settle(net, client.set("/lock", 0, b"free"))
    result = settle(net, client.txn([Compare("/lock", value=b"free")],
                                    [SetFile("/lock", rev, b"mine"), SetFile("/who", 0, b"me")],
                                    [DeleteFile("/who", -1)]))
    assert isinstance(result, TxnResult) and result.succeeded
    assert result.revs == (rev + 1, rev + 2) and result.rev == rev + 2
    result = settle(net, client.txn([Compare("/lock", rev=rev)], [], [DeleteFile("/who", -1)]))
    assert not result.succeeded and result.revs == (rev + 3,)
    assert settle(net, client.get("/who")) == (b"", 0)


def test_twisted_leases_page_through_many(net, clock):
    client = twisted_client(net, clock)
    lease = settle(net, client.grant_lease(60)).id
    writes = [client.set(f"/many/{i:05d}", 0, b"", lease=lease) for i in range(PAGE_ITEMS + 5)]
    settle(net, defer.gatherResults(writes))
    got = settle(net, client.lease_ttl(lease))
    assert got.paths == tuple(f"/many/{i:05d}" for i in range(PAGE_ITEMS + 5))


def test_twisted_keepalive_is_resent_grant_and_txn_fail(net, clock):
    client = twisted_client(net, clock)
    lease = settle(net, client.grant_lease(30)).id
    keep = client.keepalive(lease)
    ttl = client.lease_ttl(lease)
    grant = client.grant_lease(30)
    revoke = client.revoke_lease(lease)
    txn = client.txn([], [SetFile("/t", -1, b"")])
    net.kill(A)      # none of them reached A
    for lost in (grant, revoke, txn):
        with pytest.raises(ConnectionLost):
            settle(net, lost)
    clock.advance(1)
    assert settle(net, keep).id == lease
    assert settle(net, ttl).id == lease
    assert [x.id for x in settle(net, client.leases())] == [lease]
    assert settle(net, client.get("/t")) == (b"", 0)


# -- the blocking client, over TCP ---------------------------------------------------------


@pytest.fixture
def server():
    servers = start_servers(1)
    yield servers[0]
    stop_all(servers)


@pytest_twisted.inlineCallbacks
def test_blocking_lease_and_txn_verbs(server):
    def script():
        with BlockingClient(server.address, suspend_timeout=2.0) as c:
            info = c.grant_lease(15)
            out = {"info": info, "set": c.set("/eph", 0, b"x", lease=info.id)}
            out["keep"] = c.keepalive(info.id)
            out["ttl"] = c.lease_ttl(info.id)
            out["list"] = c.leases()
            out["txn"] = c.txn([Compare("/eph", value=b"x")], [DeleteFile("/eph", -1)])
            out["revoke"] = c.revoke_lease(info.id)
            try:
                c.lease_ttl(info.id)
            except DoozerError as e:
                out["gone"] = e.code
            try:
                c.set("/x", 0, b"", lease=12345)
            except DoozerError as e:
                out["nolease"] = e.code
            return out

    out = yield in_thread(script)
    info = out["info"]
    assert info.ttl >= 15 and out["set"] == 1
    assert out["keep"].id == info.id and out["keep"].remaining == pytest.approx(info.ttl, 0.1)
    assert out["ttl"].paths == ("/eph",)
    assert [x.id for x in out["list"]] == [info.id]
    assert out["txn"] == TxnResult(True, (2,), 2)
    assert out["revoke"] >= 2
    assert out["gone"] == ErrCode.NOENT and out["nolease"] == ErrCode.NOENT


# -- the blocking client's failover, with scripted sockets --------------------------------


class ScriptedSocket:
    """A socket to a fake server: ``first`` holds every request unanswered
    and then reads EOF; any other address answers every request at once."""

    def __init__(self, address, sent):
        self.address = address
        self.sent = sent
        self.inbox = bytearray()

    def setsockopt(self, *args):
        pass

    def settimeout(self, timeout):
        pass

    def sendall(self, data):
        from doozertw.wire import Response, frame
        while data:
            length = int.from_bytes(data[:4], "big")
            request = Request.FromString(data[4:4 + length])
            data = data[4 + length:]
            self.sent.append((self.address, request.verb))
            if self.address[0] != "first":
                self.inbox += frame(Response(tag=request.tag, lease=5, ttl=9, remaining=9.0))

    def recv(self, size):
        data, self.inbox = bytes(self.inbox), bytearray()
        return data     # b"" from "first": the connection is gone

    def close(self):
        pass


def test_blocking_resends_keepalive_but_not_grant():
    sent = []
    client = BlockingClient(["first:1", "second:2"], suspend_timeout=1.0, retry_delay=0.0,
                            sleep=lambda s: None,
                            open_socket=lambda address, timeout: ScriptedSocket(address, sent))
    assert client.keepalive(5) == LeaseInfo(5, 9, 9.0)
    assert sent == [(("first", 1), VERBS["LEASE_KEEPALIVE"]),
                    (("second", 2), VERBS["LEASE_KEEPALIVE"])]
    client = BlockingClient(["first:1", "second:2"], suspend_timeout=1.0, retry_delay=0.0,
                            sleep=lambda s: None,
                            open_socket=lambda address, timeout: ScriptedSocket(address, sent))
    sent.clear()
    for method, args in ((client.grant_lease, (9,)), (client.revoke_lease, (5,)),
                         (client.txn, ([], [SetFile("/a", -1, b"")]))):
        client._drop_socket()
        client._next_index = 0      # the next connection goes to "first" again
        with pytest.raises(ConnectionLost):
            method(*args)
    assert [verb for _, verb in sent] == [VERBS["LEASE_GRANT"], VERBS["LEASE_REVOKE"],
                                          VERBS["TXN"]]
    assert {address for address, _ in sent} == {("first", 1)}
