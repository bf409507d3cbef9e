"""The doozer protobuf front end, driven over StringTransport with a fake clock."""

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger

from doozertw.errors import ErrCode
from doozertw.frontends.access import Secrets
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.wire import FLAG_DEL, FLAG_SET, LENGTH, VERBS, Request, Response, frame
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.frontends import varint

V = VERBS


def parse_responses(data):
    """Split a byte stream of frames into Responses; assert nothing is left over."""
    out = []
    pos = 0
    while pos < len(data):
        (length,) = LENGTH.unpack_from(data, pos)
        body = data[pos + 4:pos + 4 + length]
        assert len(body) == length, "truncated reply frame"
        out.append(Response.FromString(body))
        pos += 4 + length
    return out


def req(verb, tag=1, **fields):
    """A framed Request; ``verb`` is a name, a number, or None for no verb."""
    if isinstance(verb, str):
        verb = V[verb]
    body = Request(tag=tag, **fields).SerializeToString()
    if verb is not None:
        # Written by hand: the generated class refuses verbs it does not know.
        body += b"\x10" + varint(verb)
    return LENGTH.pack(len(body)) + body


class Client:
    """One connection to a DoozerProtocol through a StringTransport."""

    def __init__(self, node, secrets=Secrets(), limits=Limits(), clock=None):
        self.clock = clock if clock is not None else Clock()
        self.proto = DoozerProtocol(node, secrets, limits, self.clock)
        self.logged = []
        self.proto.log = Logger(observer=self.logged.append)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def feed(self, data):
        self.proto.dataReceived(data)

    def replies(self):
        data = self.transport.value()
        self.transport.clear()
        return parse_responses(data)

    def call(self, verb, tag=1, **fields):
        """Send one request; return its only reply (asserting exactly one came)."""
        self.feed(req(verb, tag, **fields))
        replies = self.replies()
        assert len(replies) == 1, replies
        assert replies[0].tag == tag
        return replies[0]

    @property
    def closed(self):
        return self.transport.disconnecting

    def lose(self):
        self.proto.connectionLost(None)


def err(reply):
    return ErrCode(reply.err_code) if reply.HasField("err_code") else None


@pytest.fixture
def client(node):
    return Client(node)


# -- every verb, success paths ------------------------------------------------

def test_set_get_del_round_trip(client, node):
    r = client.call("SET", path="/a/b", rev=0, value=b"hello")
    assert err(r) is None and r.rev == 1
    r = client.call("GET", path="/a/b")
    assert (r.value, r.rev) == (b"hello", 1)
    r = client.call("SET", path="/a/b", rev=1, value=b"again")
    assert r.rev == 2
    r = client.call("DEL", tag=7, path="/a/b", rev=-1)
    assert err(r) is None and r.tag == 7 and r.rev == 3
    r = client.call("GET", path="/a/b")
    assert r.rev == 0 and not r.HasField("value")
    assert node.store.file_count == 0


def test_get_pinned_to_old_revision(client):
    client.call("SET", path="/x", rev=-1, value=b"one")
    client.call("SET", path="/x", rev=-1, value=b"two")
    r = client.call("GET", path="/x", rev=1)
    assert (r.value, r.rev) == (b"one", 1)


def test_get_of_empty_file_carries_empty_value(client):
    client.call("SET", path="/empty", rev=0, value=b"")
    r = client.call("GET", path="/empty")
    assert r.rev == 1 and r.HasField("value") and r.value == b""


def test_get_at_future_revision_waits_for_it(client, node):
    client.feed(req("GET", tag=3, path="/f", rev=2))
    assert client.replies() == []
    other = Client(node)
    other.call("SET", path="/f", rev=-1, value=b"1")
    assert client.replies() == []
    other.call("SET", path="/f", rev=-1, value=b"2")
    (r,) = client.replies()
    assert (r.tag, r.value, r.rev) == (3, b"2", 2)


def test_rev_self_nop(client, node):
    assert client.call("REV").rev == 0
    client.call("SET", path="/a", rev=0, value=b"")
    assert client.call("REV").rev == 1
    r = client.call("SELF")
    assert r.value == b"test-node"
    r = client.call("NOP", tag=9)
    assert err(r) is None and r.tag == 9
    assert node.store.rev == 1


def test_stat_file_dir_missing(client):
    client.call("SET", path="/d/f", rev=0, value=b"four")
    client.call("SET", path="/d/g", rev=0, value=b"")
    r = client.call("STAT", path="/d/f")
    assert (r.len, r.rev) == (4, 1)
    r = client.call("STAT", path="/d")
    assert (r.len, r.rev) == (2, -2)
    r = client.call("STAT", path="/nope")
    assert (r.len, r.rev) == (0, 0)
    r = client.call("STAT", path="/d/g", rev=1)
    assert (r.len, r.rev) == (0, 0)


def test_getdir_entries_and_errors(client):
    for name in ("b", "a", "c"):
        client.call("SET", path=f"/dir/{name}", rev=0, value=b"")
    names = [client.call("GETDIR", path="/dir", offset=i).path for i in range(3)]
    assert names == ["a", "b", "c"]
    assert err(client.call("GETDIR", path="/dir", offset=3)) == ErrCode.RANGE
    assert err(client.call("GETDIR", path="/dir", offset=-1)) == ErrCode.RANGE
    assert err(client.call("GETDIR", path="/dir/a", offset=0)) == ErrCode.NOTDIR
    assert err(client.call("GETDIR", path="/none", offset=0)) == ErrCode.NOENT
    assert client.call("GETDIR", path="/", offset=0).path == "dir"
    assert client.call("GETDIR", path="/dir", offset=0, rev=1).path == "b"
    assert err(client.call("GETDIR", path="/dir", offset=1, rev=1)) == ErrCode.RANGE


def test_walk_glob_offsets(client):
    client.call("SET", path="/w/a", rev=0, value=b"1")
    client.call("SET", path="/w/b/c", rev=0, value=b"2")
    client.call("SET", path="/other", rev=0, value=b"3")
    r = client.call("WALK", path="/w/**", offset=0)
    assert (r.path, r.value, r.rev, r.flags) == ("/w/a", b"1", 1, FLAG_SET)
    r = client.call("WALK", path="/w/**", offset=1)
    assert (r.path, r.value, r.rev) == ("/w/b/c", b"2", 2)
    assert err(client.call("WALK", path="/w/**", offset=2)) == ErrCode.RANGE
    assert err(client.call("WALK", path="/w/**", offset=-1)) == ErrCode.RANGE
    assert client.call("WALK", path="/w/*", offset=0, rev=1).path == "/w/a"
    assert err(client.call("WALK", path="/w/[", offset=0)) == ErrCode.BAD_PATH


def test_wait_replays_history_and_flags(client):
    client.call("SET", path="/k", rev=0, value=b"v")
    client.call("DEL", path="/k", rev=-1)
    r = client.call("WAIT", path="/k", rev=1)
    assert (r.path, r.value, r.rev, r.flags) == ("/k", b"v", 1, FLAG_SET)
    r = client.call("WAIT", path="/**", rev=2)
    assert (r.path, r.rev, r.flags) == ("/k", 2, FLAG_DEL)


# -- argument and verb errors -------------------------------------------------

@pytest.mark.parametrize("verb,fields", [
    ("GET", {}),
    ("SET", {"path": "/a", "value": b"x"}),
    ("SET", {"rev": 0, "value": b"x"}),
    ("DEL", {"path": "/a"}),
    ("DEL", {"rev": 0}),
    ("WAIT", {"path": "/a"}),
    ("WAIT", {"rev": 0}),
    ("WALK", {"path": "/**"}),
    ("WALK", {"offset": 0}),
    ("GETDIR", {"path": "/"}),
    ("GETDIR", {"offset": 0}),
    ("STAT", {}),
])
def test_missing_args(client, node, verb, fields):
    assert err(client.call(verb, **fields)) == ErrCode.MISSING_ARG
    assert node.store.rev == 0 and node.store.watch_count == 0


@pytest.mark.parametrize("verb", [None, 0, 4, 8, 42, 1000, -1])
def test_unknown_or_missing_verb(client, verb):
    assert err(client.call(verb, tag=5, path="/a")) == ErrCode.UNKNOWN_VERB


def test_missing_tag_is_tag_zero(client):
    client.feed(frame(Request(verb=V["REV"])))
    (r,) = client.replies()
    assert r.tag == 0 and r.rev == 0


def test_tag_in_use_while_wait_outstanding(client, node):
    client.feed(req("WAIT", tag=4, path="/t", rev=1))
    assert client.replies() == []
    r = client.call("GET", tag=4, path="/t")
    assert err(r) == ErrCode.TAG_IN_USE
    Client(node).call("SET", path="/t", rev=0, value=b"x")
    (r,) = client.replies()
    assert (r.tag, r.path, r.value) == (4, "/t", b"x") and err(r) is None
    # Once answered, the tag is free again.
    assert client.call("GET", tag=4, path="/t").value == b"x"


def test_too_late(clock):
    node = Node(store=Store(history=2))
    c = Client(node, clock=clock)
    for i in range(5):
        c.call("SET", path="/h", rev=-1, value=str(i).encode())
    assert err(c.call("GET", path="/h", rev=1)) == ErrCode.TOO_LATE
    assert err(c.call("WAIT", path="/h", rev=1)) == ErrCode.TOO_LATE
    assert err(c.call("STAT", path="/h", rev=1)) == ErrCode.TOO_LATE
    assert err(c.call("GETDIR", path="/", offset=0, rev=1)) == ErrCode.TOO_LATE
    assert err(c.call("WALK", path="/**", offset=0, rev=1)) == ErrCode.TOO_LATE
    assert node.store.watch_count == 0


def test_rev_mismatch(client, node):
    client.call("SET", path="/r", rev=0, value=b"a")
    assert err(client.call("SET", path="/r", rev=0, value=b"b")) == ErrCode.REV_MISMATCH
    client.call("SET", path="/r", rev=-1, value=b"c")
    assert err(client.call("DEL", path="/r", rev=1)) == ErrCode.REV_MISMATCH
    assert client.call("GET", path="/r").value == b"c"
    assert node.stats.write_errors == 2


def test_isdir_and_notdir(client):
    client.call("SET", path="/p/q", rev=0, value=b"")
    assert err(client.call("GET", path="/p")) == ErrCode.ISDIR
    assert err(client.call("GET", path="/")) == ErrCode.ISDIR
    assert err(client.call("SET", path="/p", rev=-1, value=b"")) == ErrCode.ISDIR
    assert err(client.call("SET", path="/p/q/r", rev=-1, value=b"")) == ErrCode.NOTDIR


@pytest.mark.parametrize("path", ["", "a", "/a/", "/a b", "//", "/a/*", "/é"])
def test_bad_path(client, node, path):
    assert err(client.call("SET", path=path, rev=-1, value=b"v")) == ErrCode.BAD_PATH
    assert err(client.call("GET", path=path)) == ErrCode.BAD_PATH
    assert node.store.rev == 0


def test_path_longer_than_limit_is_bad_path(node):
    c = Client(node, limits=Limits(max_path=10))
    long = "/" + "a" * 10
    assert err(c.call("SET", path=long, rev=-1, value=b"")) == ErrCode.BAD_PATH
    assert err(c.call("GET", path=long)) == ErrCode.BAD_PATH
    assert err(c.call("WAIT", path="/**" + "a" * 10, rev=0)) == ErrCode.BAD_PATH
    assert c.call("SET", path="/" + "a" * 9, rev=-1, value=b"").rev == 1


def test_non_utf8_path_is_bad_path(client, node):
    # proto2 strings are not validated on parse; the front end must refuse them.
    body = Request(tag=1, verb=V["SET"], rev=-1).SerializeToString() + b"\x22\x02\xff\xfe"
    client.feed(LENGTH.pack(len(body)) + body)
    (r,) = client.replies()
    assert err(r) == ErrCode.BAD_PATH and not client.closed
    assert node.store.rev == 0


def test_value_too_large(node):
    c = Client(node, limits=Limits(max_value=4))
    r = c.call("SET", path="/v", rev=-1, value=b"12345")
    assert err(r) == ErrCode.OTHER and r.err_detail == "value too large"
    assert node.store.rev == 0
    assert c.call("SET", path="/v", rev=-1, value=b"1234").rev == 1


# -- pipelining, delivery, ordering -------------------------------------------

def pipeline():
    frames = [req("SET", tag=i, path=f"/p/{i}", rev=0, value=b"v%d" % i) for i in range(20)]
    frames += [req("GET", tag=100 + i, path=f"/p/{i}") for i in range(20)]
    frames.append(req("REV", tag=999))
    return b"".join(frames)


def check_pipeline(replies):
    assert len(replies) == 41
    by_tag = {r.tag: r for r in replies}
    assert all(err(r) is None for r in replies)
    assert sorted(by_tag[i].rev for i in range(20)) == list(range(1, 21))
    assert [by_tag[100 + i].value for i in range(20)] == [b"v%d" % i for i in range(20)]
    assert by_tag[999].rev == 20


def test_many_requests_in_one_write(client):
    client.feed(pipeline())
    check_pipeline(client.replies())


def test_byte_at_a_time(client):
    data = pipeline()
    for i in range(len(data)):
        client.feed(data[i:i + 1])
    check_pipeline(client.replies())
    assert not client.closed
    assert client.clock.getDelayedCalls() == []


def test_wait_does_not_block_later_requests(client, node):
    client.call("SET", path="/cfg", rev=0, value=b"old")
    client.feed(req("WAIT", tag=1, path="/cfg", rev=2)
                + req("GET", tag=2, path="/cfg")
                + req("STAT", tag=3, path="/cfg"))
    replies = client.replies()
    assert [r.tag for r in replies] == [2, 3]
    assert replies[0].value == b"old"
    other = Client(node)
    assert other.call("SET", path="/cfg", rev=1, value=b"new").rev == 2
    (r,) = client.replies()
    assert (r.tag, r.path, r.value, r.rev, r.flags) == (1, "/cfg", b"new", 2, FLAG_SET)
    assert node.store.watch_count == 0


def test_watch_by_repeated_wait(client, node):
    """What `doozer watch` does: WAIT from rev, then again from the event's rev + 1."""
    writer = Client(node)
    seen = []
    rev = 1
    for i in range(3):
        client.feed(req("WAIT", tag=i, path="/w/**", rev=rev))
        writer.call("SET", path=f"/w/{i}", rev=0, value=b"x")
        (r,) = client.replies()
        seen.append((r.path, r.rev))
        rev = r.rev + 1
    writer.call("DEL", path="/w/1", rev=-1)
    client.feed(req("WAIT", tag=9, path="/w/**", rev=rev))
    (r,) = client.replies()
    assert r.flags == FLAG_DEL and r.path == "/w/1"
    assert seen == [("/w/0", 1), ("/w/1", 2), ("/w/2", 3)]


# -- access -------------------------------------------------------------------

SECRETS = Secrets(rw=b"rw-secret", ro=b"ro-secret")


def test_no_secret_configured_allows_everything(client):
    assert client.call("SET", path="/a", rev=0, value=b"").rev == 1
    assert err(client.call("ACCESS", value=b"anything")) == ErrCode.OTHER


def test_everything_denied_before_access(node):
    c = Client(node, secrets=SECRETS)
    for verb, fields in [("GET", {"path": "/a"}), ("SET", {"path": "/a", "rev": -1}),
                         ("DEL", {"path": "/a", "rev": -1}), ("REV", {}), ("NOP", {}),
                         ("WAIT", {"path": "/a", "rev": 0}), ("SELF", {}),
                         ("WALK", {"path": "/**", "offset": 0}), ("STAT", {"path": "/"}),
                         ("GETDIR", {"path": "/", "offset": 0})]:
        r = c.call(verb, **fields)
        assert err(r) == ErrCode.OTHER and r.err_detail == "permission denied", verb
    assert node.store.rev == 0 and node.store.watch_count == 0


def test_wrong_secret_denied(node):
    c = Client(node, secrets=SECRETS)
    r = c.call("ACCESS", value=b"nope")
    assert err(r) == ErrCode.OTHER and r.err_detail == "permission denied"
    assert err(c.call("GET", path="/a")) == ErrCode.OTHER


def test_read_only_secret(node):
    c = Client(node, secrets=SECRETS)
    assert err(c.call("ACCESS", value=b"ro-secret")) is None
    assert c.call("GET", path="/a").rev == 0
    assert c.call("REV").rev == 0
    for verb, fields in [("SET", {"path": "/a", "rev": -1}), ("DEL", {"path": "/a", "rev": -1}),
                         ("NOP", {})]:
        r = c.call(verb, **fields)
        assert err(r) == ErrCode.OTHER and r.err_detail == "permission denied"
    assert node.store.rev == 0


def test_read_write_secret(node):
    c = Client(node, secrets=SECRETS)
    assert err(c.call("ACCESS", value=b"rw-secret")) is None
    assert c.call("SET", path="/a", rev=0, value=b"x").rev == 1
    assert c.call("GET", path="/a").value == b"x"
    # Rights belong to the connection, not the node.
    assert err(Client(node, secrets=SECRETS).call("GET", path="/a")) == ErrCode.OTHER


# -- framing violations -------------------------------------------------------

def test_oversize_frame_disconnects_without_touching_store(node):
    c = Client(node, limits=Limits(max_frame=64))
    c.feed(LENGTH.pack(65) + b"\x08\x01")
    assert c.closed and c.replies() == []
    assert node.store.rev == 0
    assert any("too long" in e["why"] for e in c.logged)
    c.feed(req("SET", path="/a", rev=-1, value=b""))
    assert node.store.rev == 0 and c.replies() == []


def test_frame_at_limit_is_accepted(node):
    c = Client(node, limits=Limits(max_frame=64))
    body = Request(tag=1, verb=V["SET"], path="/a", rev=-1).SerializeToString()
    body += Request(value=b"x" * (64 - len(body) - 2)).SerializeToString()
    assert len(body) == 64
    c.feed(LENGTH.pack(len(body)) + body)
    (r,) = c.replies()
    assert err(r) is None and not c.closed


def test_garbage_disconnects_without_touching_store(client, node):
    client.feed(LENGTH.pack(3) + b"\xff\xff\xff")
    assert client.closed and node.store.rev == 0
    assert client.replies() == []


def test_replies_before_garbage_are_sent(client, node):
    client.feed(req("SET", path="/a", rev=-1, value=b"") + LENGTH.pack(2) + b"\xff\xff"
                + req("SET", tag=2, path="/b", rev=-1, value=b""))
    (r,) = client.replies()
    assert r.rev == 1 and client.closed
    assert node.store.rev == 1


def test_empty_frame_is_an_unknown_verb(client):
    client.feed(LENGTH.pack(0))
    (r,) = client.replies()
    assert err(r) == ErrCode.UNKNOWN_VERB and r.tag == 0


# -- flow control and timeouts ------------------------------------------------

def test_in_flight_limit_pauses_and_resumes(node):
    c = Client(node, limits=Limits(max_in_flight=3))
    waits = b"".join(req("WAIT", tag=t, path=f"/q/{t}", rev=1) for t in range(3))
    c.feed(waits + req("GET", tag=10, path="/q/0") + req("REV", tag=11))
    assert c.transport.producerState == "paused"
    assert c.replies() == []
    c.feed(req("REV", tag=12))  # already in the pipe: buffered, not handled
    assert c.replies() == []
    Client(node).call("SET", path="/q/0", rev=0, value=b"x")
    assert c.transport.producerState == "producing"
    replies = c.replies()
    assert [r.tag for r in replies] == [0, 10, 11, 12]
    assert replies[1].value == b"x" and replies[2].rev == 1
    assert node.store.watch_count == 2


def test_in_flight_limit_counts_pending_writes(node):
    proposer = HeldProposer(node.store)
    node.proposer = proposer
    c = Client(node, limits=Limits(max_in_flight=2))
    c.feed(req("SET", tag=1, path="/a", rev=-1) + req("NOP", tag=2) + req("REV", tag=3))
    assert c.transport.producerState == "paused" and c.replies() == []
    proposer.release_one()
    assert c.transport.producerState == "producing"
    assert [r.tag for r in c.replies()] == [1, 3]
    proposer.release_one()
    (r,) = c.replies()
    assert r.tag == 2 and err(r) is None


def test_request_timeout_closes_stalled_partial_frame(client):
    timeout = Limits().request_send_timeout
    data = req("GET", path="/a")
    client.feed(data[:3])
    client.clock.advance(timeout - 1)
    assert not client.closed
    client.feed(data[3:])
    assert len(client.replies()) == 1
    assert client.clock.getDelayedCalls() == []
    client.clock.advance(timeout * 2)
    assert not client.closed
    client.feed(data[:6])
    client.clock.advance(timeout)
    assert client.closed
    assert any("in time" in e["why"] for e in client.logged)


def test_no_timer_while_idle_or_paused(node):
    c = Client(node, limits=Limits(max_in_flight=1))
    assert c.clock.getDelayedCalls() == []
    c.feed(req("WAIT", tag=1, path="/a", rev=1) + req("GET", tag=2, path="/a")[:5])
    assert c.transport.producerState == "paused"
    assert c.clock.getDelayedCalls() == []
    Client(node).call("SET", path="/a", rev=-1, value=b"")
    assert len(c.clock.getDelayedCalls()) == 1


# -- connection loss and node failures ----------------------------------------

def test_connection_lost_cancels_waits(client, node):
    assert node.stats.connections == 1
    client.feed(req("WAIT", tag=1, path="/x/**", rev=1) + req("WAIT", tag=2, path="/y", rev=1))
    assert node.store.watch_count == 2
    client.lose()
    assert node.store.watch_count == 0
    assert node.stats.connections == 0
    Client(node).call("SET", path="/y", rev=-1, value=b"")
    assert client.replies() == []


def test_connection_lost_cancels_reads_pinned_to_future_revisions(client, node):
    for tag, verb in enumerate(("GET", "STAT"), start=1):
        client.feed(req(verb, tag=tag, path="/a", rev=10**12))
    client.feed(req("GETDIR", tag=3, path="/", rev=10**12, offset=0))
    client.feed(req("WALK", tag=4, path="/**", rev=10**12, offset=0))
    assert node.store.rev_waiter_count == 4
    client.lose()
    assert node.store.rev_waiter_count == 0
    assert client.replies() == []


def test_late_results_after_close_are_dropped(node):
    proposer = HeldProposer(node.store)
    node.proposer = proposer
    c = Client(node)
    c.feed(req("SET", path="/a", rev=-1, value=b"v") + req("GET", tag=2, path="/a", rev=5))
    c.lose()
    proposer.release_one()
    assert node.store.rev == 1
    assert c.replies() == []
    assert not [e for e in c.logged if e.get("log_failure")]


class HeldProposer:
    """A commit path whose proposals complete only when the test releases them."""

    def __init__(self, store, fail_with=None):
        self.store = store
        self.held = []
        self.fail_with = fail_with

    def propose(self, mutation):
        d = defer.Deferred()
        self.held.append((mutation, d))
        return d

    def release_one(self):
        mutation, d = self.held.pop(0)
        if self.fail_with is not None:
            d.errback(self.fail_with)
        else:
            d.callback(self.store.apply(mutation))


def test_unexpected_exception_becomes_other(node):
    proposer = HeldProposer(node.store, fail_with=RuntimeError("boom"))
    node.proposer = proposer
    c = Client(node)
    c.feed(req("SET", path="/a", rev=-1, value=b""))
    proposer.release_one()
    (r,) = c.replies()
    assert err(r) == ErrCode.OTHER and r.err_detail == "internal error"
    assert [e for e in c.logged if e.get("log_failure")]
    assert c.call("REV", tag=2).rev == 0


def test_exception_raised_by_node_method_becomes_other(node, monkeypatch):
    def broken(*args):
        raise KeyError("oops")
    monkeypatch.setattr(node, "stat", broken)
    c = Client(node)
    r = c.call("STAT", path="/a")
    assert err(r) == ErrCode.OTHER and r.err_detail == "internal error"
    assert c.call("GET", tag=2, path="/a").rev == 0


# -- what the Go doozer CLI does -----------------------------------------------

def go_find(c, root):
    """doozer find: REV, then stat/getdir recursion pinned to that revision."""
    tags = iter(range(1, 10**6))
    rev = c.call("REV", tag=next(tags)).rev
    found = []

    def stat(path):
        r = c.call("STAT", tag=next(tags), path=path, rev=rev)
        assert err(r) is None
        return r.rev

    def getdir(path):
        names, offset = [], 0
        while True:
            r = c.call("GETDIR", tag=next(tags), path=path, rev=rev, offset=offset)
            if err(r) == ErrCode.RANGE:
                return names
            assert err(r) is None
            names.append(r.path)
            offset += 1

    def walk(path, file_rev):
        found.append(path)
        if file_rev != -2:
            return
        prefix = path if path == "/" else path + "/"
        for name in getdir(path):
            walk(prefix + name, stat(prefix + name))
        if path == "/":
            # Writes after the pinned revision must not show up mid-walk.
            c.call("SET", tag=next(tags), path="/late", rev=-1, value=b"")

    walk(root, stat(root))
    return found


def test_go_style_find(client):
    for path in ("/b/x", "/a", "/b/y/z", "/c"):
        client.call("SET", path=path, rev=-1, value=b"v")
    assert go_find(client, "/") == ["/", "/a", "/b", "/b/x", "/b/y", "/b/y/z", "/c"]
    assert go_find(client, "/b") == ["/b", "/b/x", "/b/y", "/b/y/z"]
    assert client.call("GET", path="/late").rev == 5


def test_go_style_cli_session(client, node):
    """set, get, del, stat, rev, nop, self as the doozer CLI sends them."""
    rev = client.call("SET", path="/message", rev=0, value=b"hi").rev
    assert client.call("GET", path="/message").value == b"hi"
    r = client.call("STAT", path="/message", rev=rev)
    assert (r.len, r.rev) == (2, rev)
    assert client.call("REV").rev == rev
    assert err(client.call("NOP")) is None
    assert client.call("SELF").value == node.name.encode()
    assert client.call("DEL", path="/message", rev=rev).rev == rev + 1
    assert client.call("GET", path="/message").rev == 0


def test_connection_counted(node):
    a, b = Client(node), Client(node)
    assert node.stats.connections == 2
    a.lose()
    b.lose()
    assert node.stats.connections == 0


def test_tag_in_use_while_write_pending(node):
    proposer = HeldProposer(node.store)
    node.proposer = proposer
    c = Client(node)
    c.feed(req("SET", tag=3, path="/a", rev=0, value=b"first"))
    r = c.call("SET", tag=3, path="/a", rev=-1, value=b"second")
    assert err(r) == ErrCode.TAG_IN_USE
    assert len(proposer.held) == 1
    proposer.release_one()
    (r,) = c.replies()
    assert (r.tag, r.rev) == (3, 1) and err(r) is None
    assert node.store.get("/a") == (b"first", 1)


def test_default_frame_limit_is_enforced(client, node):
    client.feed(LENGTH.pack(Limits().max_frame + 1) + b"\x08")
    assert client.closed and node.store.rev == 0
