"""POST /v1/txn, in memory (StubTreq): semantics, limits, hostile bodies, secrets."""

import base64
import json

import pytest
from twisted.internet.task import Clock

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.access import Secrets
from doozertw.frontends.interface import CLOBBER, Compare, DeleteFile, SetFile
from doozertw.frontends.web.txn import body_limit, parse_txn
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.web import Client, make_site

RW, RO = b"rw-secret", b"ro-secret"
JSON = {"Content-Type": ["application/json"]}


@pytest.fixture
def tnode():
    node = Node(name="txn-node", store=Store(history=100), reactor=Clock())
    node.txn_calls = 0
    real = node.txn

    def counted(*args, **kw):
        node.txn_calls += 1
        return real(*args, **kw)

    node.txn = counted
    return node


@pytest.fixture
def client(tnode):
    return Client(make_site(tnode))


def txn(client, doc, headers=None):
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return client.json("POST", "/v1/txn", data, headers)


def test_create_if_missing_succeeds_then_fails(client, tnode):
    doc = {"compare": [{"path": "/lock", "rev": 0}],
           "success": [{"set": "/lock", "value": "me"}, {"set": "/owner", "value": "me"}],
           "failure": [{"set": "/lost", "value": "yes"}]}
    code, body = txn(client, doc)
    assert code == 200
    assert body == {"succeeded": True, "revs": [1, 2], "rev": 2}
    assert tnode.store.get("/lock") == (b"me", 1)
    code, body = txn(client, doc)
    assert code == 200
    assert body == {"succeeded": False, "revs": [3], "rev": 3}
    assert tnode.store.get("/lost") == (b"yes", 3)
    assert tnode.store.get("/lock") == (b"me", 1)


def test_compare_by_value_and_delete(client, tnode):
    tnode.set("/cfg", CLOBBER, b"v1")
    doc = {"compare": [{"path": "/cfg", "value": "v1"}],
           "success": [{"del": "/cfg"}, {"set": "/cfg2", "value": "gP8=", "encoding": "base64"}]}
    code, body = txn(client, doc)
    assert code == 200 and body["succeeded"] is True and len(body["revs"]) == 2
    assert tnode.store.get("/cfg") == (b"", 0)
    assert tnode.store.get("/cfg2")[0] == b"\x80\xff"


def test_compare_value_on_missing_file_fails(client):
    code, body = txn(client, {"compare": [{"path": "/none", "value": ""}],
                              "failure": [{"del": "/none"}]})
    assert code == 200 and body["succeeded"] is False and body["revs"] == [0]


def test_empty_txn_succeeds(client):
    code, body = txn(client, {})
    assert code == 200 and body == {"succeeded": True, "revs": [], "rev": 0}


def test_op_error_fails_whole_txn_with_its_code(client, tnode):
    tnode.set("/d/f", CLOBBER, b"x")
    code, body = txn(client, {"success": [{"set": "/new", "value": "1"},
                                          {"set": "/d", "value": "2"}]})
    assert code == 409 and body["error"] == "ISDIR"
    assert tnode.store.get("/new") == (b"", 0)


def test_op_rev_mismatch_is_409(client, tnode):
    tnode.set("/a", CLOBBER, b"x")
    code, body = txn(client, {"success": [{"set": "/a", "value": "y", "rev": 0}]})
    assert code == 409 and body["error"] == "REV_MISMATCH"


def test_set_with_unknown_lease_is_404(client, tnode):
    code, body = txn(client, {"success": [{"set": "/e", "value": "v", "lease": 99}]})
    assert code == 404 and body["error"] == "NOENT"
    assert tnode.store.get("/e") == (b"", 0)


# -- hostile input -----------------------------------------------------------

BAD_BODIES = [
    b"", b"nope", b"[]", b"null", b"\xff", b'{"compare": {}}', b'{"success": "x"}',
    b'{"other": []}', b'{"success": [1]}', b'{"success": [{}]}',
    b'{"success": [{"set": "/a"}]}', b'{"success": [{"set": "/a", "del": "/b"}]}',
    b'{"success": [{"set": "/a", "value": 5}]}', b'{"success": [{"set": 5, "value": "x"}]}',
    b'{"success": [{"set": "/a", "value": "x", "lease": -1}]}',
    b'{"success": [{"set": "/a", "value": "x", "lease": "1"}]}',
    b'{"success": [{"set": "/a", "value": "x", "rev": true}]}',
    b'{"success": [{"set": "/a", "value": "x", "bogus": 1}]}',
    b'{"success": [{"set": "/a", "value": "!!", "encoding": "base64"}]}',
    b'{"success": [{"set": "/a", "value": "x", "encoding": "rot13"}]}',
    b'{"compare": [{"path": "/a"}]}', b'{"compare": [{"path": "/a", "rev": 1, "value": ""}]}',
    b'{"compare": [{"path": "/a", "rev": -1}]}', b'{"compare": [{"path": "/a", "rev": 1.0}]}',
    b'{"compare": [{"rev": 0}]}', b'{"compare": [["/a", 0]]}',
    b'{"compare": [{"path": "/a", "rev": ' + b"9" * 5000 + b"}]}",
    b"[" * 3000 + b"]" * 3000, b'{"success": ' + b"[" * 3000 + b"]" * 3000 + b"}",
]


@pytest.mark.parametrize("data", BAD_BODIES)
def test_malformed_bodies_are_400_without_touching_the_node(client, tnode, data):
    code, body = txn(client, data)
    assert code == 400 and body["error"] == "MISSING_ARG", body
    assert tnode.txn_calls == 0 and tnode.store.rev == 0


@pytest.mark.parametrize("path", ["", "relative", "/a b", "/a//b", "/" + "x" * 5000,
                                  "/a/*", "/a\u0000b", "/é"])
def test_bad_paths_inside_a_txn_are_400(client, tnode, path):
    for doc in ({"compare": [{"path": path, "rev": 0}]},
                {"success": [{"set": path, "value": "x"}]},
                {"failure": [{"del": path}]}):
        code, body = txn(client, doc)
        assert code == 400 and body["error"] == "BAD_PATH", (doc, body)
    assert tnode.txn_calls == 0


def test_too_many_ops_is_400_before_reading_them(client, tnode):
    limit = Limits().max_txn_ops
    doc = {"success": [{"del": f"/k{i}"} for i in range(limit + 1)]}
    code, body = txn(client, doc)
    assert code == 400 and "too many" in body["detail"]
    ok = {"success": [{"del": f"/k{i}"} for i in range(limit)]}
    assert txn(client, ok)[0] == 200


def test_a_million_ops_is_refused_untouched(client, tnode):
    # 10**6 small operations: past the body cap (413) ...
    huge = b'{"success":[' + b",".join([b'{"del":"/a"}'] * 10**6) + b"]}"
    code, body = txn(client, huge)
    assert code == 413 and tnode.txn_calls == 0
    # ... and 10**6 operations that fit in the body: counted, not read (400).
    compact = b'{"success":[' + b",".join([b"0"] * 10**6) + b"]}"
    assert len(compact) < body_limit(Limits())
    code, body = txn(client, compact)
    assert code == 400 and "too many" in body["detail"]
    assert tnode.txn_calls == 0 and tnode.store.rev == 0


def test_too_many_bytes_is_413():
    limits = Limits(max_txn_bytes=1000)
    doc = {"success": [{"set": "/a", "value": "x" * 600}, {"set": "/b", "value": "y" * 600}]}
    with pytest.raises(DoozerError) as e:
        parse_txn(doc, limits)
    assert e.value.code == ErrCode.OTHER and "too large" in e.value.detail


def test_body_over_the_limit_is_413(tnode):
    client = Client(make_site(tnode, limits=Limits(max_txn_bytes=1000)))
    doc = {"success": [{"set": "/a", "value": "x" * (body_limit(Limits(max_txn_bytes=1000)))}]}
    code, body = txn(client, doc)
    assert code == 413 and tnode.txn_calls == 0


def test_parse_builds_the_interface_values():
    doc = {"compare": [{"path": "/a", "rev": 3}, {"path": "/b", "value": "v"}],
           "success": [{"set": "/c", "value": base64.b64encode(b"\0\1").decode(),
                        "encoding": "base64", "lease": 7, "rev": 0}],
           "failure": [{"del": "/d", "rev": 4}]}
    assert parse_txn(doc, Limits()) == (
        (Compare("/a", rev=3), Compare("/b", value=b"v")),
        (SetFile("/c", 0, b"\0\1", 7),),
        (DeleteFile("/d", 4),))


# -- secrets -------------------------------------------------------------------

def test_read_only_secret_cannot_run_a_txn(tnode):
    client = Client(make_site(tnode, secrets=Secrets(rw=RW, ro=RO)))
    doc = {"success": [{"set": "/x", "value": "1"}]}
    for headers in ({"X-Doozer-Secret": [RO.decode()]}, {}):
        code, body = txn(client, doc, headers)
        assert code == 403 and "permission denied" in body["detail"]
    assert tnode.txn_calls == 0
    code, body = txn(client, doc, {"X-Doozer-Secret": [RW.decode()]})
    assert code == 200 and body["succeeded"] is True


def test_cross_origin_txn_is_refused(client, tnode):
    code, _ = txn(client, {}, {"Origin": ["http://evil.example"]})
    assert code == 403 and tnode.txn_calls == 0
