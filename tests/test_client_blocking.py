"""The blocking client over real TCP (127.0.0.1, ephemeral ports)."""

import threading

import pytest
import pytest_twisted
from twisted.internet import reactor

from doozertw.client import (
    BlockingClient, ConnectionLost, DoozerError, ErrCode, WaitTimeout, call, connect_blocking)
from doozertw.frontends.access import Secrets
from doozertw.store import DEL, SET
from doozertw.testing.servers import in_thread, start_servers, stop_all


@pytest.fixture
def pair():
    servers = start_servers(2)
    yield servers
    stop_all(servers)


def client_for(servers, **options):
    options.setdefault("suspend_timeout", 5.0)
    options.setdefault("retry_delay", 0.02)
    return BlockingClient([s.address for s in servers], **options)


@pytest_twisted.inlineCallbacks
def test_verbs_and_helpers(pair):
    def script():
        with client_for(pair) as c:
            out = {"rev0": c.rev(), "set": c.set("/a/b", 0, b"one"),
                   "add": c.set("/a/c", 0, "two")}
            out["get"] = c.get("/a/b")
            out["missing"] = c.get("/nope")
            out["stat"] = (c.stat("/a"), c.stat("/a/b"), c.stat("/nope"))
            out["getdir"] = c.getdir("/a", offset=1)
            out["walk"] = c.walk("/a/*", offset=0).path
            out["dir_all"] = c.getdir_all("/a")
            out["walk_all"] = [e.path for e in c.walk_all("/**")]
            out["find"] = c.find("/")
            out["self"] = c.self()
            out["nop"] = c.nop()
            out["del"] = c.delete("/a/c", 2)
            out["wait"] = c.wait("/a/*", 3)
            out["past"] = c.get("/a/c", 2)
            try:
                c.set("/a/b", 0, b"again")
            except DoozerError as e:
                out["mismatch"] = e.code
            return out

    out = yield in_thread(script)
    assert out["rev0"] == 0 and out["set"] == 1 and out["add"] == 2
    assert out["get"] == (b"one", 1) and out["missing"] == (b"", 0)
    assert out["stat"] == ((2, -2), (3, 1), (0, 0))
    assert out["getdir"] == "c" and out["walk"] == "/a/b"
    assert out["dir_all"] == ["b", "c"]
    assert out["walk_all"] == ["/a/b", "/a/c"]
    assert out["find"] == ["/", "/a", "/a/b", "/a/c"]
    assert out["self"] == "n1" and out["nop"] is None and out["del"] == 3
    assert (out["wait"].rev, out["wait"].kind) == (3, DEL)
    assert out["past"] == (b"two", 2)
    assert out["mismatch"] == ErrCode.REV_MISMATCH


@pytest_twisted.inlineCallbacks
def test_pipelined_many_and_watch_interleave(pair):
    def script():
        c = client_for(pair)
        watch = c.watch("/p/*")
        results = c.many([c_ for c_ in _sets(30)])
        events = [next(watch) for _ in range(30)]
        c.close()
        with pytest.raises(ConnectionLost):
            c.rev()
        return results, events

    results, events = yield in_thread(script)
    assert sorted(results) == list(range(1, 31))
    assert [e.rev for e in events] == list(range(1, 31))
    assert all(e.kind == SET for e in events)


def _sets(n):
    from doozertw.client import call
    return [call("SET", path=f"/p/{i}", rev=0, value=b"x") for i in range(n)]


@pytest_twisted.inlineCallbacks
def test_watch_timeout_keeps_the_watch_usable(pair):
    def script():
        c = client_for(pair)
        watch = c.watch("/t", timeout=0.2)
        try:
            next(watch)
            timed_out = False
        except WaitTimeout:
            timed_out = True
        other = client_for(pair)
        other.set("/t", 0, b"v")
        event = watch.next(timeout=5)
        try:
            c.wait("/never", 1, timeout=0.1)
            waited = None
        except WaitTimeout as e:
            waited = str(e)
        return timed_out, event, waited, c.rev()

    timed_out, event, waited, rev = yield in_thread(script)
    assert timed_out and event.path == "/t" and event.rev == 1
    assert waited == "wait timeout" and rev == 1


@pytest_twisted.inlineCallbacks
def test_too_late_is_raised_by_the_watch():
    (server,) = start_servers(1, history=5)
    try:
        def script():
            c = BlockingClient(server.address)
            for i in range(10):
                c.set("/f", -1, str(i))
            with pytest.raises(DoozerError) as info:
                next(c.watch("/f", rev=1))
            return info.value.code

        assert (yield in_thread(script)) == ErrCode.TOO_LATE
    finally:
        yield server.kill()


@pytest_twisted.inlineCallbacks
def test_secret_from_uri_and_refusal():
    servers = start_servers(1, secrets=Secrets(rw=b"k"))
    try:
        address = servers[0].address

        def script():
            ok = connect_blocking(f"doozer:?ca={address}&sk=k").set("/s", 0, b"v")
            with pytest.raises(DoozerError) as info:
                BlockingClient(address).rev()
            with pytest.raises(DoozerError) as wrong:
                BlockingClient(address, secret="bad").rev()
            return ok, str(info.value), str(wrong.value)

        ok, refused, wrong = yield in_thread(script)
        assert ok == 1 and "permission denied" in refused and "permission denied" in wrong
    finally:
        yield servers[0].kill()


@pytest_twisted.inlineCallbacks
def test_no_server_reachable_is_lost():
    def script():
        states = []
        c = BlockingClient(["127.0.0.1:1", "127.0.0.1:2"], suspend_timeout=0.2,
                           retry_delay=0.05)
        c.add_listener(states.append)
        with pytest.raises(ConnectionLost) as info:
            c.rev()
        return states, str(info.value)

    states, message = yield in_thread(script)
    assert states == ["lost"] and "no doozer server reachable" in message


@pytest_twisted.inlineCallbacks
def test_writer_and_watcher_survive_a_killed_node(pair):
    """The issue's acceptance test: kill the node both clients use mid-stream."""
    first, second = pair
    total = 60
    killed = threading.Event()
    watching = threading.Event()

    def writer():
        c = client_for(pair)
        states = []
        c.add_listener(states.append)
        ambiguous = 0
        for i in range(total):
            if i == total // 3:
                watching.wait(5)
                reactor.callFromThread(lambda: first.kill().addCallback(lambda _: killed.set()))
                killed.wait(5)
            while True:
                try:
                    c.set(f"/w/{i:03}", 0, str(i))
                    break
                except ConnectionLost:
                    ambiguous += 1
                    if c.get(f"/w/{i:03}")[1]:
                        break
        return states, c.self()

    def watcher():
        c = client_for(pair)
        events = []
        for event in c.watch("/w/*", rev=1):
            events.append(event)
            watching.set()
            if len(events) == total:
                return events, c.self()

    watched = in_thread(watcher)
    states, writer_node = yield in_thread(writer)
    events, watcher_node = yield watched
    assert states[0] == "connected" and "suspended" in states and states[-1] == "connected"
    assert writer_node == watcher_node == "n2"
    assert [e.path for e in events] == [f"/w/{i:03}" for i in range(total)]
    assert [e.rev for e in events] == list(range(1, total + 1))


class ScriptedNet:
    """Fake sockets for the blocking client: records requests, answers by script.

    ``answer(request)`` returns a Response to queue at once, or None to hold
    the request (``release`` queues an answer later). ``kill(address)``
    makes that address's socket read EOF and refuse new connections.
    """

    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self.sockets = []
        self.dead = set()

    def open_socket(self, address, timeout):
        if address in self.dead:
            raise ConnectionRefusedError(address)
        sock = ScriptedSocket(self, address)
        self.sockets.append(sock)
        return sock

    def kill(self, address):
        self.dead.add(address)


class ScriptedSocket:
    def __init__(self, net, address):
        self.net = net
        self.address = address
        self.inbox = bytearray()
        self.reader = None

    def setsockopt(self, *args):
        pass

    def settimeout(self, timeout):
        pass

    def sendall(self, data):
        from doozertw.wire import Request
        while data:
            length = int.from_bytes(data[:4], "big")
            request = Request()
            request.ParseFromString(data[4:4 + length])
            data = data[4 + length:]
            self.net.requests.append((self.address, request))
            response = self.net.answer(request)
            if response is not None:
                self.release(response, request.tag)

    def release(self, response, tag):
        from doozertw.wire import frame
        response.tag = tag
        self.inbox += frame(response)

    def recv(self, size):
        import socket
        if self.inbox:
            data, self.inbox = bytes(self.inbox), bytearray()
            return data
        if self.address in self.net.dead:
            return b""
        raise socket.timeout()

    def close(self):
        pass


def scripted_client(net, addresses=(("a", 1), ("b", 2))):
    return BlockingClient([f"{h}:{p}" for h, p in addresses], open_socket=net.open_socket,
                          suspend_timeout=1.0, retry_delay=0.0, sleep=lambda s: None)


def test_answers_for_other_requests_are_kept_for_them():
    from doozertw.wire import VERBS, Response
    held = []

    def answer(request):
        if request.verb == VERBS["WAIT"]:
            held.append(request)
            return None
        return Response(rev=7)

    net = ScriptedNet(answer)
    c = scripted_client(net)
    watch = c.watch("/x", rev=3)
    with pytest.raises(WaitTimeout):
        watch.next(timeout=0)
    # The WAIT's answer arrives ahead of the REV's: it is kept for the watch.
    net.sockets[0].release(Response(rev=5, path="/x", value=b"v", flags=4), held[0].tag)
    assert c.rev() == 7
    event = watch.next(timeout=0)
    assert (event.rev, event.path, event.value) == (5, "/x", b"v")
    assert len(held) == 1 and held[0].rev == 3
    assert watch.next_rev == 6


def test_lost_connection_resends_reads_and_fails_writes():
    from doozertw.wire import VERBS, Response

    def answer(request):
        if request.verb in (VERBS["WAIT"], VERBS["SET"]) and not net.sockets[-1].address[0] == "b":
            return None
        if request.verb == VERBS["WAIT"]:
            return Response(rev=request.rev, path="/w", value=b"", flags=4)
        return Response(rev=1)

    net = ScriptedNet(answer)
    c = scripted_client(net)
    states = []
    c.add_listener(states.append)
    watch = c.watch("/w", rev=9)
    with pytest.raises(WaitTimeout):
        watch.next(timeout=0)
    net.kill(("a", 1))
    with pytest.raises(ConnectionLost):
        c.set("/w", -1, b"x")
    assert states == ["connected", "suspended", "connected"]
    assert watch.next(timeout=0).rev == 9
    resent = [r for address, r in net.requests if address == ("b", 2)]
    assert [(r.verb, r.rev) for r in resent] == [(VERBS["WAIT"], 9)]


def test_exchange_returns_the_raw_response_with_its_error():
    from doozertw.wire import VERBS, Response

    def answer(request):
        if request.verb == VERBS["SET"]:
            return Response(err_code=int(ErrCode.REV_MISMATCH), err_detail="old")
        return Response(rev=4, path="x")

    c = scripted_client(ScriptedNet(answer))
    refused = c.exchange(call("SET", path="/a", rev=0, value=b"v"))
    assert refused.err_code == ErrCode.REV_MISMATCH and refused.err_detail == "old"
    got = c.exchange(call("GETDIR", path="/", rev=4, offset=0))
    assert (got.rev, got.path, got.HasField("err_code")) == (4, "x", False)


def test_a_timed_out_request_is_abandoned_not_resent_after_a_reconnect():
    from doozertw.wire import VERBS, Response

    def answer(request):
        if net.sockets[-1].address[0] == "a" and request.verb in (
                VERBS["LEASE_KEEPALIVE"], VERBS["WAIT"], VERBS["GET"]):
            return None                 # node a never answers these
        if request.verb == VERBS["WAIT"]:
            return Response(rev=request.rev, path="/w", value=b"", flags=4)
        return Response(rev=1)

    net = ScriptedNet(answer)
    c = scripted_client(net)
    watch = c.watch("/w", rev=9)        # outstanding, not abandoned: re-sent
    with pytest.raises(WaitTimeout):
        watch.next(timeout=0)
    with pytest.raises(WaitTimeout):
        c.request(call("LEASE_KEEPALIVE", lease=7), timeout=0)
    with pytest.raises(WaitTimeout):
        c.exchange(call("GET", path="/g"), timeout=0)
    net.kill(("a", 1))
    assert c.rev() == 1                 # fails over to b
    assert watch.next(timeout=0).rev == 9
    resent = [(r.verb, r.path) for address, r in net.requests if address == ("b", 2)]
    assert (VERBS["WAIT"], "/w") in resent
    assert VERBS["LEASE_KEEPALIVE"] not in [verb for verb, _ in resent]
    assert (VERBS["GET"], "/g") not in resent
