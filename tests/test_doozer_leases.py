"""doozertw's extension verbs on the doozer protobuf front end: leases, SET
with a lease, TXN (docs/protocol.md, "Extensions: leases and transactions").

Driven over StringTransport with a fake clock. ``LeaseNode`` is a small
stand-in that records what the front end asks of the node (so argument
conversion, bounds and access checks are checked exactly); the tests at
the end run against a real doozertw.node.Node.
"""

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.access import Secrets
from doozertw.frontends.doozer_ext import MAX_ID, PAGE_BYTES, PAGE_ITEMS
from doozertw.frontends.interface import Compare, DeleteFile, LeaseInfo, SetFile, TxnResult
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.wire import LENGTH, VERBS, Request, Response, frame

SECRETS = Secrets(rw=b"rw-secret", ro=b"ro-secret")


def req(verb, tag=1, **fields):
    return frame(Request(tag=tag, verb=VERBS[verb], **fields))


def err(reply):
    return ErrCode(reply.err_code) if reply.HasField("err_code") else None


class Client:
    """One connection to a DoozerProtocol through a StringTransport."""

    def __init__(self, node, secrets=Secrets(), limits=Limits()):
        self.clock = Clock()
        self.proto = DoozerProtocol(node, secrets, limits, self.clock)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def feed(self, data):
        self.proto.dataReceived(data)

    def replies(self):
        data, pos, out = self.transport.value(), 0, []
        self.transport.clear()
        while pos < len(data):
            (length,) = LENGTH.unpack_from(data, pos)
            out.append(Response.FromString(data[pos + 4:pos + 4 + length]))
            pos += 4 + length
        return out

    def call(self, verb, tag=1, **fields):
        """Send one request; return its only reply."""
        self.feed(req(verb, tag, **fields))
        (reply,) = self.replies()
        assert reply.tag == tag
        return reply

    @property
    def closed(self):
        return self.transport.disconnecting


class LeaseNode(Node):
    """A Node whose lease and txn methods are a recording model."""

    def __init__(self):
        super().__init__(name="test-node", store=Store())
        self.calls = []
        self.table = {}     # id -> LeaseInfo
        self.next_id = 1

    def _fail(self, code, detail=""):
        return defer.fail(DoozerError(code, detail))

    def grant_lease(self, ttl, lease=0):
        self.calls.append(("grant", ttl, lease))
        if lease in self.table:
            return self._fail(ErrCode.REV_MISMATCH, "taken")
        lease = lease or self.next_id
        self.next_id = max(self.next_id, lease) + 1
        self.table[lease] = LeaseInfo(lease, ttl, float(ttl))
        return defer.succeed(self.table[lease])

    def keepalive(self, lease):
        self.calls.append(("keepalive", lease))
        if lease not in self.table:
            return self._fail(ErrCode.NOENT)
        return defer.succeed(self.table[lease])

    def revoke_lease(self, lease):
        self.calls.append(("revoke", lease))
        if self.table.pop(lease, None) is None:
            return self._fail(ErrCode.NOENT)
        return defer.succeed(self.store.rev)

    def lease_info(self, lease):
        self.calls.append(("info", lease))
        if lease not in self.table:
            return self._fail(ErrCode.NOENT)
        return defer.succeed(self.table[lease])

    def leases(self):
        self.calls.append(("leases",))
        return defer.succeed(list(self.table.values()))

    def set(self, path, rev, value, lease=0):
        self.calls.append(("set", path, rev, value, lease))
        return super().set(path, rev, value)

    def txn(self, compares, success, failure=()):
        self.calls.append(("txn", compares, success, failure))
        return defer.succeed(TxnResult(True, tuple(range(1, len(success) + 1)), 7))


@pytest.fixture
def node():
    return LeaseNode()


@pytest.fixture
def client(node):
    return Client(node)


def txn_request(tag=1, compares=(), success=(), failure=()):
    """A framed TXN: compares are dicts of Request.Compare fields, ops of Request.Op."""
    request = Request(tag=tag, verb=VERBS["TXN"])
    for c in compares:
        request.compares.add(**c)
    for op in success:
        request.success.add(**op)
    for op in failure:
        request.failure.add(**op)
    return frame(request)


def call_txn(client, **parts):
    client.feed(txn_request(**parts))
    (reply,) = client.replies()
    return reply


# -- the schema -----------------------------------------------------------------


def test_extension_numbers_are_unused_by_doozer():
    doozer = {"GET": 1, "SET": 2, "DEL": 3, "REV": 5, "WAIT": 6, "NOP": 7, "WALK": 9,
              "GETDIR": 14, "STAT": 16, "SELF": 20, "ACCESS": 99}
    assert {k: VERBS[k] for k in doozer} == doozer
    extensions = set(VERBS) - set(doozer)
    assert extensions == {"LEASE_GRANT", "LEASE_KEEPALIVE", "LEASE_REVOKE", "LEASE_TTL",
                          "LEASE_LIST", "TXN"}
    assert all(50 <= VERBS[v] <= 55 for v in extensions)
    for message in (Request, Request().__class__):
        numbers = {f.name: f.number for f in message.DESCRIPTOR.fields}
        new = {n for name, n in numbers.items()
               if name not in ("tag", "verb", "path", "value", "other_tag", "offset", "rev")}
        assert min(new) >= 20


def test_a_plain_doozer_request_is_byte_identical():
    """A doozer client's SET carries none of the new fields."""
    body = Request(tag=1, verb=VERBS["SET"], path="/a", rev=0, value=b"x").SerializeToString()
    assert body == b"\x08\x01\x10\x02\x22\x02/a\x2a\x01x\x48\x00"


# -- leases -----------------------------------------------------------------------


def test_grant_keepalive_ttl_list_revoke(client, node):
    r = client.call("LEASE_GRANT", ttl=10)
    assert err(r) is None and (r.lease, r.ttl, r.remaining) == (1, 10, 10.0)
    r = client.call("LEASE_GRANT", tag=2, ttl=5, lease=42)
    assert (r.tag, r.lease, r.ttl) == (2, 42, 5)
    assert err(client.call("LEASE_GRANT", ttl=5, lease=42)) == ErrCode.REV_MISMATCH
    r = client.call("LEASE_KEEPALIVE", lease=42)
    assert (r.lease, r.ttl, r.remaining) == (42, 5, 5.0)
    r = client.call("LEASE_TTL", lease=1)
    assert (r.lease, r.ttl, list(r.paths), r.more) == (1, 10, [], False)
    r = client.call("LEASE_LIST")
    assert [(x.id, x.ttl) for x in r.leases] == [(1, 10), (42, 5)] and not r.more
    r = client.call("LEASE_REVOKE", lease=42)
    assert err(r) is None and r.HasField("rev")
    assert err(client.call("LEASE_KEEPALIVE", lease=42)) == ErrCode.NOENT
    assert err(client.call("LEASE_TTL", lease=42)) == ErrCode.NOENT
    assert err(client.call("LEASE_REVOKE", lease=42)) == ErrCode.NOENT
    assert node.calls[:2] == [("grant", 10, 0), ("grant", 5, 42)]


def test_set_with_a_lease_passes_it_on(client, node):
    r = client.call("SET", path="/a", rev=0, value=b"x", lease=9)
    assert err(r) is None
    assert node.calls == [("set", "/a", 0, b"x", 9)]
    client.call("SET", path="/b", rev=0, value=b"y")
    client.call("SET", path="/c", rev=0, value=b"y", lease=0)
    assert node.calls[1:] == [("set", "/b", 0, b"y", 0), ("set", "/c", 0, b"y", 0)]


@pytest.mark.parametrize("lease", [-1, -(2 ** 63)])
def test_bad_lease_ids_are_noent_and_never_reach_the_node(client, node, lease):
    for verb in ("LEASE_KEEPALIVE", "LEASE_REVOKE", "LEASE_TTL"):
        assert err(client.call(verb, lease=lease)) == ErrCode.NOENT
    assert err(client.call("SET", path="/a", rev=0, value=b"", lease=lease)) == ErrCode.NOENT
    assert err(client.call("LEASE_GRANT", ttl=5, lease=lease)) == ErrCode.RANGE
    assert node.calls == []


def test_missing_fields_are_missing_arg(client, node):
    assert err(client.call("LEASE_GRANT")) == ErrCode.MISSING_ARG
    for verb in ("LEASE_KEEPALIVE", "LEASE_REVOKE", "LEASE_TTL"):
        assert err(client.call(verb)) == ErrCode.MISSING_ARG
    assert err(client.call("SET", path="/a", value=b"", lease=3)) == ErrCode.MISSING_ARG
    assert node.calls == []


@pytest.mark.parametrize("ttl", [0, -5, Limits().max_lease_ttl + 1, 2 ** 62])
def test_grant_ttl_out_of_range(client, node, ttl):
    assert err(client.call("LEASE_GRANT", ttl=ttl)) == ErrCode.RANGE
    assert node.calls == []


def test_lease_ttl_pages_its_paths(client, node):
    paths = tuple(f"/p/{i:05d}" for i in range(PAGE_ITEMS + 10))
    node.table[3] = LeaseInfo(3, 10, 9.5, paths)
    r = client.call("LEASE_TTL", lease=3)
    assert r.more and list(r.paths) == list(paths[:PAGE_ITEMS]) and r.remaining == 9.5
    r = client.call("LEASE_TTL", lease=3, path=r.paths[-1])
    assert not r.more and list(r.paths) == list(paths[PAGE_ITEMS:])
    long_paths = tuple(f"/{i:04d}/" + "x" * 1000 for i in range(200))
    node.table[4] = LeaseInfo(4, 10, 10.0, long_paths)
    r = client.call("LEASE_TTL", lease=4)
    assert r.more and PAGE_BYTES <= sum(len(p) for p in r.paths) < PAGE_BYTES + 1100


def test_lease_list_pages_by_id(client, node):
    for i in range(1, PAGE_ITEMS + 3):
        node.table[i * 2] = LeaseInfo(i * 2, 5, 5.0)
    r = client.call("LEASE_LIST")
    assert r.more and len(r.leases) == PAGE_ITEMS and r.leases[0].id == 2
    r = client.call("LEASE_LIST", lease=r.leases[-1].id)
    assert not r.more and [x.id for x in r.leases] == [2 * (PAGE_ITEMS + 1), 2 * (PAGE_ITEMS + 2)]


def test_lease_ttl_after_path_is_bounded(client, node):
    node.table[1] = LeaseInfo(1, 5, 5.0)
    r = client.call("LEASE_TTL", lease=1, path="/" * (Limits().max_path + 1))
    assert err(r) == ErrCode.BAD_PATH


# -- access ---------------------------------------------------------------------------


def _with_grant(node, secret):
    c = Client(node, secrets=SECRETS)
    assert err(c.call("ACCESS", tag=99, value=secret)) is None
    return c


def test_read_only_clients_may_not_write_leases_or_txns(node):
    node.table[1] = LeaseInfo(1, 5, 5.0)
    ro = _with_grant(node, b"ro-secret")
    writes = [("LEASE_GRANT", {"ttl": 5}), ("LEASE_KEEPALIVE", {"lease": 1}),
              ("LEASE_REVOKE", {"lease": 1}),
              ("SET", {"path": "/a", "rev": 0, "value": b"", "lease": 1})]
    for verb, fields in writes:
        r = ro.call(verb, **fields)
        assert err(r) == ErrCode.OTHER and "permission" in r.err_detail.lower(), verb
    r = call_txn(ro, success=[{"verb": VERBS["SET"], "path": "/a", "rev": -1, "value": b"x"}])
    assert err(r) == ErrCode.OTHER
    assert node.calls == []
    assert ro.call("LEASE_TTL", lease=1).lease == 1
    assert [x.id for x in ro.call("LEASE_LIST").leases] == [1]
    anonymous = Client(node, secrets=SECRETS)
    assert err(anonymous.call("LEASE_LIST")) == ErrCode.OTHER
    rw = _with_grant(node, b"rw-secret")
    assert err(rw.call("LEASE_KEEPALIVE", lease=1)) is None


# -- transactions ------------------------------------------------------------------------


def test_txn_converts_compares_and_ops(client, node):
    r = call_txn(client, tag=5,
                 compares=[{"path": "/a", "rev": 0}, {"path": "/b", "value": b"v"}],
                 success=[{"verb": VERBS["SET"], "path": "/a", "rev": 0, "value": b"1",
                           "lease": 4},
                          {"verb": VERBS["DEL"], "path": "/b", "rev": -1}],
                 failure=[{"verb": VERBS["SET"], "path": "/c", "rev": -1, "value": b""}])
    assert err(r) is None and (r.tag, r.succeeded, list(r.revs), r.rev) == (5, True, [1, 2], 7)
    assert node.calls == [("txn", (Compare("/a", rev=0), Compare("/b", value=b"v")),
                           (SetFile("/a", 0, b"1", 4), DeleteFile("/b", -1)),
                           (SetFile("/c", -1, b""),))]


def test_an_empty_txn_reaches_the_node(client, node):
    r = call_txn(client)
    assert err(r) is None and node.calls == [("txn", (), (), ())]


SET_OP = {"verb": VERBS["SET"], "path": "/a", "rev": -1, "value": b"x"}


@pytest.mark.parametrize("parts, code", [
    ({"compares": [{"path": "/a"}]}, ErrCode.MISSING_ARG),
    ({"compares": [{"path": "/a", "rev": 1, "value": b""}]}, ErrCode.MISSING_ARG),
    ({"compares": [{"rev": 1}]}, ErrCode.MISSING_ARG),
    ({"compares": [{"path": "/a", "rev": -1}]}, ErrCode.RANGE),
    ({"success": [{"path": "/a", "rev": 1}]}, ErrCode.UNKNOWN_VERB),
    ({"success": [{"verb": VERBS["GET"], "path": "/a", "rev": 1}]}, ErrCode.UNKNOWN_VERB),
    ({"failure": [{"verb": VERBS["SET"], "path": "/a", "value": b""}]}, ErrCode.MISSING_ARG),
    ({"failure": [{"verb": VERBS["DEL"], "rev": 1}]}, ErrCode.MISSING_ARG),
    ({"success": [{"verb": VERBS["DEL"], "path": "/a", "rev": 1, "value": b"x"}]},
     ErrCode.OTHER),
    ({"success": [dict(SET_OP, lease=-3)]}, ErrCode.NOENT),
    ({"success": [dict(SET_OP, path="/" + "a" * 5000)]}, ErrCode.BAD_PATH),
    ({"success": [dict(SET_OP, value=b"v" * (Limits().max_value + 1))]}, ErrCode.OTHER),
])
def test_bad_txn_parts_never_reach_the_node(client, node, parts, code):
    assert err(call_txn(client, **parts)) == code
    assert node.calls == []


def test_oversized_txn_is_refused_before_the_node():
    limits = Limits(max_txn_ops=4, max_txn_bytes=100)
    node = LeaseNode()
    c = Client(node, limits=limits)
    ops = [dict(SET_OP, path=f"/{i}") for i in range(3)]
    assert err(call_txn(c, compares=[{"path": "/x", "rev": 0}], success=ops)) is None
    r = call_txn(c, compares=[{"path": "/x", "rev": 0}] * 2, success=ops)
    assert err(r) == ErrCode.RANGE and "4" in r.err_detail
    r = call_txn(c, success=[dict(SET_OP, value=b"v" * 60), dict(SET_OP, path="/b",
                                                                  value=b"v" * 60)])
    assert err(r) == ErrCode.RANGE
    assert len(node.calls) == 1


def test_a_frame_full_of_compares_is_bounded_and_the_connection_lives(client, node):
    """The largest frame a client may send, all tiny compares: refused by count."""
    request = Request(tag=3, verb=VERBS["TXN"])
    for _ in range(20000):
        request.compares.add(path="/a", rev=1)
    client.feed(frame(request))
    (r,) = client.replies()
    assert err(r) == ErrCode.RANGE and not client.closed and node.calls == []
    assert client.call("REV", tag=4).tag == 4


def test_unknown_op_verb_numbers_do_not_break_parsing(client, node):
    # Request.Op with verb 77 (not in the enum) written by hand: field 23, one Op
    op = b"\x08\x4d\x12\x02/a\x18\x01"
    body = Request(tag=2, verb=VERBS["TXN"]).SerializeToString() + b"\xba\x01" + bytes(
        [len(op)]) + op
    client.feed(len(body).to_bytes(4, "big") + body)
    (r,) = client.replies()
    assert err(r) == ErrCode.UNKNOWN_VERB and node.calls == []


def test_node_errors_come_back_with_their_code(node):
    def failing_txn(compares, success, failure=()):
        return defer.fail(DoozerError(ErrCode.ISDIR, "/d"))

    node.txn = failing_txn
    c = Client(node)
    r = call_txn(c, success=[SET_OP])
    assert (err(r), r.err_detail) == (ErrCode.ISDIR, "/d")


def test_lease_requests_pipeline_with_tags(client, node):
    client.feed(req("LEASE_GRANT", tag=1, ttl=5) + req("LEASE_GRANT", tag=2, ttl=6)
                + req("LEASE_LIST", tag=3))
    replies = client.replies()
    assert [(r.tag, r.lease) for r in replies[:2]] == [(1, 1), (2, 2)]
    assert [x.id for x in replies[2].leases] == [1, 2]


def test_max_id_is_the_largest_int64():
    assert MAX_ID == 2 ** 63 - 1


# -- against a real Node ------------------------------------------------------------------


@pytest.fixture
def real():
    clock = Clock()
    node = Node(name="real", store=Store(), reactor=clock)
    c = Client(node)
    c.clock = clock
    return node, c


def test_real_node_lease_life(real):
    node, c = real
    r = c.call("LEASE_GRANT", ttl=10)
    assert err(r) is None and r.ttl >= 10
    lease, ttl = r.lease, r.ttl
    set_rev = c.call("SET", path="/svc/a", rev=0, value=b"up", lease=lease).rev
    assert node.lease_of("/svc/a") == lease
    c.call("SET", path="/svc/b", rev=0, value=b"up", lease=lease)
    r = c.call("LEASE_TTL", lease=lease)
    assert (r.lease, r.ttl, list(r.paths), r.more) == (lease, ttl, ["/svc/a", "/svc/b"], False)
    assert 0 < r.remaining <= ttl
    assert [x.id for x in c.call("LEASE_LIST").leases] == [lease]
    c.clock.advance(ttl * 0.6)
    r = c.call("LEASE_KEEPALIVE", lease=lease)
    assert err(r) is None and r.remaining == pytest.approx(ttl)
    c.clock.advance(ttl * 0.6)
    assert c.call("GET", path="/svc/a").rev == set_rev     # kept alive
    r = c.call("LEASE_REVOKE", lease=lease)
    assert err(r) is None and r.rev == node.store.rev
    assert c.call("GET", path="/svc/a").rev == 0 and c.call("GET", path="/svc/b").rev == 0
    assert err(c.call("LEASE_TTL", lease=lease)) == ErrCode.NOENT
    assert list(c.call("LEASE_LIST").leases) == []


def test_real_node_lease_expiry_deletes_files(real):
    node, c = real
    lease = c.call("LEASE_GRANT", ttl=5).lease
    c.call("SET", path="/eph", rev=0, value=b"x", lease=lease)
    c.clock.advance(c.call("LEASE_TTL", lease=lease).ttl + 1)
    assert c.call("GET", path="/eph").rev == 0
    assert err(c.call("LEASE_KEEPALIVE", lease=lease)) == ErrCode.NOENT
    assert err(c.call("SET", path="/eph", rev=0, value=b"x", lease=lease)) == ErrCode.NOENT


def test_real_node_grant_with_an_id(real):
    node, c = real
    assert c.call("LEASE_GRANT", ttl=30, lease=77).lease == 77
    assert err(c.call("LEASE_GRANT", ttl=30, lease=77)) == ErrCode.REV_MISMATCH


def test_real_node_txn(real):
    node, c = real
    rev = c.call("SET", path="/lock", rev=0, value=b"a").rev
    r = call_txn(c, compares=[{"path": "/lock", "rev": rev}],
                 success=[{"verb": VERBS["SET"], "path": "/lock", "rev": -1, "value": b"b"},
                          {"verb": VERBS["SET"], "path": "/owner", "rev": 0, "value": b"me"}],
                 failure=[{"verb": VERBS["DEL"], "path": "/lock", "rev": -1}])
    assert err(r) is None and r.succeeded and len(r.revs) == 2 and r.rev == r.revs[-1]
    assert c.call("GET", path="/owner").value == b"me"
    r = call_txn(c, compares=[{"path": "/lock", "value": b"a"}],
                 success=[{"verb": VERBS["DEL"], "path": "/owner", "rev": -1}],
                 failure=[{"verb": VERBS["DEL"], "path": "/lock", "rev": -1}])
    assert err(r) is None and not r.succeeded and len(r.revs) == 1
    assert c.call("GET", path="/lock").rev == 0 and c.call("GET", path="/owner").rev > 0
    before = node.store.rev
    r = call_txn(c, success=[{"verb": VERBS["SET"], "path": "/owner", "rev": 1,
                              "value": b"x"},
                             {"verb": VERBS["SET"], "path": "/new", "rev": 0, "value": b""}])
    assert err(r) == ErrCode.REV_MISMATCH and node.store.rev == before
    assert c.call("GET", path="/new").rev == 0


def test_real_node_read_only_and_txn_limit():
    node = Node(name="real", store=Store(), reactor=Clock())
    ro = Client(node, secrets=SECRETS)
    ro.call("ACCESS", value=b"ro-secret")
    assert err(ro.call("LEASE_GRANT", ttl=5)) == ErrCode.OTHER
    assert list(ro.call("LEASE_LIST").leases) == []
    c = Client(node, limits=Limits(max_txn_ops=2))
    r = call_txn(c, success=[dict(SET_OP, path=f"/{i}") for i in range(3)])
    assert err(r) == ErrCode.RANGE and node.store.rev == 0
