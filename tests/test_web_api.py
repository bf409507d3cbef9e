"""The HTTP JSON API under /v1/ and the mostdb endpoints, in memory (StubTreq)."""

import base64
import json

import pytest
from twisted.internet import defer

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.access import Secrets
from doozertw.frontends.web.common import NoQuorum
from doozertw.testing.web import Client, make_site
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store


@pytest.fixture
def client(node):
    return Client(make_site(node))


def test_put_then_get_returns_value_and_revision(client, node):
    code, body = client.json("PUT", "/v1/keys/a/b", b"hello")
    assert (code, body) == (200, {"path": "/a/b", "rev": 1})
    code, body = client.json("GET", "/v1/keys/a/b")
    assert code == 200
    assert body == {"path": "/a/b", "rev": 1, "value": "hello", "encoding": "utf-8"}
    assert node.store.get("/a/b") == (b"hello", 1)


def test_put_with_json_body(client, node):
    code, body = client.json("PUT", "/v1/keys/j", json.dumps({"value": "héllo"}).encode(),
                             {"Content-Type": ["application/json"]})
    assert code == 200
    assert node.store.get("/j")[0] == "héllo".encode("utf-8")


def test_missing_file_is_404_noent(client):
    code, body = client.json("GET", "/v1/keys/nothing/here")
    assert code == 404
    assert body["error"] == "NOENT" and body["code"] == 22


def test_directory_read_is_isdir(client, node):
    node.set("/d/f", -1, b"x")
    code, body = client.json("GET", "/v1/keys/d")
    assert code == 409 and body["error"] == "ISDIR"


def test_bad_path_is_400(client):
    code, body = client.json("PUT", "/v1/keys/bad%20name", b"x")
    assert code == 400 and body["error"] == "BAD_PATH" and body["code"] == 6


def test_path_longer_than_limit_is_bad_path(node):
    client = Client(make_site(node, limits=Limits(max_path=10)))
    code, body = client.json("PUT", "/v1/keys/" + "a" * 20, b"x")
    assert code == 400 and body["error"] == "BAD_PATH"
    assert node.store.rev == 0


def test_cas_create_only_with_rev_zero(client):
    assert client.json("PUT", "/v1/keys/c?rev=0", b"one")[0] == 200
    code, body = client.json("PUT", "/v1/keys/c?rev=0", b"two")
    assert code == 409
    assert body == {"error": "REV_MISMATCH", "code": 5, "detail": ""}


def test_cas_with_revision(client, node):
    rev = client.json("PUT", "/v1/keys/c", b"one")[1]["rev"]
    node.set("/other", -1, b"bump")
    assert client.json("PUT", f"/v1/keys/c?rev={rev}", b"two")[0] == 200
    code, body = client.json("PUT", f"/v1/keys/c?rev={rev}", b"three")
    assert code == 409 and body["error"] == "REV_MISMATCH"
    assert node.store.get("/c")[0] == b"two"


def test_delete_with_cas(client, node):
    rev = client.json("PUT", "/v1/keys/gone", b"x")[1]["rev"]
    node.set("/gone", -1, b"y")
    code, body = client.json("DELETE", f"/v1/keys/gone?rev={rev}")
    assert code == 409 and body["error"] == "REV_MISMATCH"
    code, body = client.json("DELETE", "/v1/keys/gone")
    assert code == 200 and body["rev"] == node.store.rev
    assert client.json("GET", "/v1/keys/gone")[0] == 404


def test_non_integer_rev_is_400(client):
    code, body = client.json("PUT", "/v1/keys/x?rev=abc", b"x")
    assert code == 400 and body["error"] == "MISSING_ARG"


def test_read_at_past_revision(client):
    client.json("PUT", "/v1/keys/p", b"first")
    client.json("PUT", "/v1/keys/p", b"second")
    code, body = client.json("GET", "/v1/keys/p?rev=1")
    assert code == 200 and body["value"] == "first" and body["rev"] == 1
    assert client.json("GET", "/v1/keys/p")[1]["value"] == "second"


def test_read_older_than_history_is_410_too_late():
    node = Node(store=Store(history=2))
    client = Client(make_site(node))
    for i in range(5):
        node.set("/h", -1, str(i).encode())
    code, body = client.json("GET", "/v1/keys/h?rev=1")
    assert code == 410 and body["error"] == "TOO_LATE" and body["code"] == 4


def test_binary_value_round_trips_as_octets(client, node):
    blob = bytes(range(256))
    code, _, _ = client.call("PUT", "/v1/keys/bin", blob,
                             {"Content-Type": ["application/octet-stream"]})
    assert code == 200
    assert node.store.get("/bin")[0] == blob
    code, headers, body = client.call("GET", "/v1/keys/bin", None,
                                      {"Accept": ["application/octet-stream"]})
    assert code == 200 and body == blob
    assert headers.getRawHeaders("x-doozer-rev") == ["1"]


def test_invalid_utf8_is_base64_in_json(client, node):
    node.set("/bin", -1, b"\xff\x00\xfe")
    code, body = client.json("GET", "/v1/keys/bin")
    assert body["encoding"] == "base64"
    assert base64.b64decode(body["value"]) == b"\xff\x00\xfe"


def test_json_put_with_base64_encoding(client, node):
    doc = {"value": base64.b64encode(b"\x80\x81").decode(), "encoding": "base64"}
    code, _ = client.json("PUT", "/v1/keys/b64", json.dumps(doc).encode(),
                          {"Content-Type": ["application/json"]})
    assert code == 200 and node.store.get("/b64")[0] == b"\x80\x81"
    bad = {"value": "!!!not base64", "encoding": "base64"}
    code, body = client.json("PUT", "/v1/keys/b64", json.dumps(bad).encode(),
                             {"Content-Type": ["application/json"]})
    assert code == 400 and body["error"] == "MISSING_ARG"


def test_invalid_json_body_is_400(client, node):
    code, body = client.json("PUT", "/v1/keys/x", b"{nope", {"Content-Type": ["application/json"]})
    assert code == 400 and node.store.rev == 0


def test_value_too_large_is_413(node):
    client = Client(make_site(node, limits=Limits(max_value=8)))
    code, body = client.json("PUT", "/v1/keys/big", b"x" * 9)
    assert code == 413 and body["error"] == "OTHER"
    doc = json.dumps({"value": "y" * 9}).encode()
    code, body = client.json("PUT", "/v1/keys/big", doc, {"Content-Type": ["application/json"]})
    assert code == 413
    assert node.store.rev == 0
    assert client.json("PUT", "/v1/keys/big", b"x" * 8)[0] == 200


def test_rev_walk_and_cluster(client, node):
    node.set("/a/1", -1, b"one")
    node.set("/a/2", -1, b"two")
    node.set("/b", -1, b"bee")
    assert client.json("GET", "/v1/rev") == (200, {"rev": 3})
    code, body = client.json("GET", "/v1/walk?glob=/a/*")
    assert code == 200 and body["rev"] == 3
    assert [(f["path"], f["value"], f["rev"]) for f in body["files"]] == [
        ("/a/1", "one", 1), ("/a/2", "two", 2)]
    code, body = client.json("GET", "/v1/walk?glob=/**&rev=1")
    assert [f["path"] for f in body["files"]] == ["/a/1"]
    code, body = client.json("GET", "/v1/walk?glob=bad")
    assert code == 400 and body["error"] == "BAD_PATH"
    code, body = client.json("GET", "/v1/cluster")
    assert code == 200 and body["leader"] == node.name and body["term"] == 0
    assert body["nodes"] == [{"name": node.name, "role": "leader", "term": 0, "applied": 3,
                              "healthy": True, "addr": ""}]


# -- secrets -------------------------------------------------------------------


@pytest.fixture
def secured(node):
    return Client(make_site(node, secrets=Secrets(rw=b"rw-secret", ro=b"ro-secret")))


def test_no_secret_is_403(secured):
    code, body = secured.json("GET", "/v1/keys/x")
    assert code == 403 and body["detail"] == "permission denied"
    assert secured.json("PUT", "/v1/keys/x", b"v")[0] == 403
    assert secured.json("GET", "/v1/rev")[0] == 403


def test_read_only_secret_reads_but_cannot_write(secured, node):
    node.set("/x", -1, b"v")
    ro = {"Authorization": ["Bearer ro-secret"]}
    assert secured.json("GET", "/v1/keys/x", None, ro)[0] == 200
    code, body = secured.json("PUT", "/v1/keys/x", b"w", ro)
    assert code == 403 and node.store.get("/x")[0] == b"v"
    assert secured.json("DELETE", "/v1/keys/x", None, ro)[0] == 403


def test_read_write_secret_in_either_header(secured, node):
    assert secured.json("PUT", "/v1/keys/x", b"1", {"X-Doozer-Secret": ["rw-secret"]})[0] == 200
    bearer = {"Authorization": ["Bearer rw-secret"]}
    assert secured.json("PUT", "/v1/keys/x", b"2", bearer)[0] == 200
    assert secured.json("PUT", "/v1/keys/x", b"3", {"Authorization": ["Bearer wrong"]})[0] == 403
    assert node.store.get("/x")[0] == b"2"


# -- no quorum -------------------------------------------------------------------


class FailingProposer:
    def __init__(self, exc):
        self.exc = exc

    def propose(self, mutation):
        return defer.fail(self.exc)


@pytest.mark.parametrize("exc", [NoQuorum(), DoozerError(ErrCode.OTHER, "no quorum")])
def test_write_without_quorum_is_503(exc):
    node = Node(proposer=FailingProposer(exc))
    client = Client(make_site(node))
    code, body = client.json("PUT", "/v1/keys/x", b"v")
    assert code == 503 and body["detail"] == "no quorum"
    code, body = client.json("POST", "/mostdb/set", b'{"key":"k","value":"v"}')
    assert body == {"code": 500, "message": "NotMost", "success": False}


# -- mostdb ------------------------------------------------------------------------


def test_mostdb_set_get_del(client, node):
    assert client.json("POST", "/mostdb/set", b'{"key":"ping","value":"pong"}') == (
        200, {"code": 200, "success": True})
    assert node.store.get("/ping")[0] == b"pong"
    assert client.json("POST", "/mostdb/get", b'{"key":"ping"}') == (
        200, {"code": 200, "success": True, "result": {"key": "ping", "value": "pong"}})
    assert client.json("POST", "/mostdb/del", b'{"key":"ping"}') == (
        200, {"code": 200, "success": True})
    assert client.json("POST", "/mostdb/get", b'{"key":"ping"}') == (
        200, {"code": 500, "message": "NotFound", "success": False})


def test_mostdb_keys_with_slash_and_bad_keys(client, node):
    client.json("POST", "/mostdb/set", b'{"key":"/cfg/db","value":"x"}')
    assert node.store.get("/cfg/db")[0] == b"x"
    code, body = client.json("POST", "/mostdb/set", b'{"key":"a b","value":"x"}')
    assert body["success"] is False and body["message"] == "BAD_PATH"
    code, body = client.json("POST", "/mostdb/get", b'{"value":"no key"}')
    assert body["success"] is False and body["code"] == 500
    code, body = client.json("POST", "/mostdb/get", b'not json')
    assert body["success"] is False


def test_mostdb_respects_secrets(secured, node):
    _, body = secured.json("POST", "/mostdb/set", b'{"key":"k","value":"v"}')
    assert body == {"code": 500, "message": "permission denied", "success": False}
    _, body = secured.json("POST", "/mostdb/set", b'{"key":"k","value":"v"}',
                           {"X-Doozer-Secret": ["rw-secret"]})
    assert body["success"] is True and node.store.get("/k")[0] == b"v"


def test_cross_origin_writes_are_refused(client, node):
    code, body = client.json("PUT", "/v1/keys/x", b"v", {"Origin": ["http://evil.example"]})
    assert code == 403 and "cross-origin" in body["detail"]
    _, body = client.json("POST", "/mostdb/set", b'{"key":"x","value":"v"}',
                          {"Origin": ["http://evil.example"]})
    assert body["success"] is False
    assert node.store.rev == 0
    same = {"Origin": ["http://doozer.test"]}
    assert client.json("PUT", "/v1/keys/x", b"v", same)[0] == 200
    assert client.json("DELETE", "/v1/keys/x", None, same)[0] == 200


def test_unexpected_failure_is_a_json_500():
    node = Node(proposer=FailingProposer(RuntimeError("boom")))
    client = Client(make_site(node))
    code, body = client.json("PUT", "/v1/keys/x", b"v")
    assert code == 500 and body["error"] == "OTHER" and "RuntimeError" in body["detail"]


@pytest.mark.parametrize("body", [b'{"value":"no key"}', b'{"key":""}', b'not json'])
def test_mostdb_missing_key_is_mostdbs_own_message(client, body):
    # gotoeasy/mostdb web/fasthttp_crud_chan.go: MostResultNg("参数有误")
    assert client.json("POST", "/mostdb/get", body) == (
        200, {"code": 500, "message": "参数有误", "success": False})
