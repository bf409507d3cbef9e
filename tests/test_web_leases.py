"""Leases over HTTP (/v1/leases, PUT ?lease=, the /leases page), in memory (StubTreq)."""

import json

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.access import Secrets
from doozertw.frontends.interface import LeaseInfo
from doozertw.frontends.web.leases import MAX_LEASE_ID, render_leases_page
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.web import Client, WebSocketConversation, make_site

RW, RO = b"rw-secret", b"ro-secret"
WRITES = ("grant_lease", "keepalive", "revoke_lease", "txn", "set", "delete")


def lease_node(clock=None):
    """A real single node keeping lease time on a fake clock."""
    return Node(name="lease-node", store=Store(history=100), reactor=clock or Clock())


def spy(node):
    """Count every call of the node's write verbs (``node.calls[name]``)."""
    node.calls = {}
    for name in WRITES + ("lease_info", "leases"):
        real = getattr(node, name)

        def counted(*args, _real=real, _name=name, **kw):
            node.calls[_name] = node.calls.get(_name, 0) + 1
            return _real(*args, **kw)

        setattr(node, name, counted)
    return node


def writes(node):
    return sum(node.calls.get(name, 0) for name in WRITES)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def lnode(clock):
    return spy(lease_node(clock))


@pytest.fixture
def client(lnode, clock):
    return Client(make_site(lnode, reactor=clock))


def post(client, path, doc, headers=None):
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return client.json("POST", path, data, headers)


def grant(client, ttl=30, **extra):
    code, body = post(client, "/v1/leases", dict(ttl=ttl, **extra))
    assert code == 200, body
    return body


def test_grant_returns_id_and_ttl(client):
    body = grant(client, 30)
    assert set(body) == {"id", "ttl"} and body["ttl"] == 30
    assert isinstance(body["id"], int) and body["id"] > 0


def test_grant_with_chosen_id_then_taken(client):
    assert grant(client, 10, id=77)["id"] == 77
    code, body = post(client, "/v1/leases", {"ttl": 10, "id": 77})
    assert code == 409 and body["error"] == "REV_MISMATCH"


def test_grant_put_revoke_key_gone(client, lnode):
    lease = grant(client, 60)["id"]
    code, body = client.json("PUT", f"/v1/keys/svc/a?lease={lease}", b"here")
    assert code == 200
    assert lnode.lease_of("/svc/a") == lease
    code, info = client.json("GET", f"/v1/leases/{lease}")
    assert code == 200
    assert info["id"] == lease and info["ttl"] == 60 and info["files"] == ["/svc/a"]
    assert 0 < info["remaining"] <= 60
    code, body = client.json("DELETE", f"/v1/leases/{lease}")
    assert code == 200 and body["id"] == lease and body["rev"] >= 2
    code, body = client.json("GET", "/v1/keys/svc/a")
    assert code == 404 and body["error"] == "NOENT"
    code, body = client.json("GET", f"/v1/leases/{lease}")
    assert code == 404 and body["error"] == "NOENT"


def test_put_without_lease_detaches(client, lnode):
    lease = grant(client)["id"]
    client.json("PUT", f"/v1/keys/e?lease={lease}", b"1")
    assert client.json("PUT", "/v1/keys/e", b"2")[0] == 200
    assert lnode.lease_of("/e") == 0
    client.json("DELETE", f"/v1/leases/{lease}")
    assert client.json("GET", "/v1/keys/e")[1]["value"] == "2"


def test_put_with_unknown_lease_is_404_and_writes_nothing(client, lnode):
    code, body = client.json("PUT", "/v1/keys/x?lease=999", b"v")
    assert code == 404 and body["error"] == "NOENT"
    assert lnode.store.get("/x") == (b"", 0)


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "9" * 30, str(MAX_LEASE_ID + 1)])
def test_put_with_bad_lease_is_400_untouched(client, lnode, bad):
    code, body = client.json("PUT", f"/v1/keys/x?lease={bad}", b"v")
    assert code == 400 and body["error"] == "MISSING_ARG"
    assert writes(lnode) == 0


def test_keepalive_and_list(client):
    a = grant(client, 10)["id"]
    b = grant(client, 20)["id"]
    code, body = client.json("POST", f"/v1/leases/{a}/keepalive")
    assert code == 200 and set(body) == {"id", "ttl", "remaining"}
    assert body["id"] == a and body["ttl"] == 10 and 0 < body["remaining"] <= 10
    code, body = client.json("GET", "/v1/leases")
    assert code == 200
    assert [(x["id"], x["ttl"], x["files"]) for x in body["leases"]] == [(a, 10, []), (b, 20, [])]


def test_keepalive_unknown_lease_is_404(client):
    code, body = client.json("POST", "/v1/leases/4242/keepalive")
    assert code == 404 and body["error"] == "NOENT"


def test_revoke_unknown_lease_is_404(client):
    code, body = client.json("DELETE", "/v1/leases/4242")
    assert code == 404 and body["error"] == "NOENT"


def test_wrong_method_and_unknown_subresource(client):
    assert client.json("PUT", "/v1/leases", b"{}")[0] == 405
    assert client.json("GET", "/v1/leases/1/keepalive")[0] == 405
    code, body = client.json("GET", "/v1/leases/1/other")
    assert code == 404 and body["error"] == "NOENT"


# -- hostile input ------------------------------------------------------------

BAD_TTLS = [0, -5, 10**100, "10", 1.5, True, None, [], {"a": 1}, 31 * 86_400 * 12]


@pytest.mark.parametrize("ttl", BAD_TTLS)
def test_bad_ttl_is_400_without_touching_the_node(client, lnode, ttl):
    code, body = post(client, "/v1/leases", {"ttl": ttl})
    assert code == 400 and body["error"] == "MISSING_ARG", body
    assert writes(lnode) == 0


@pytest.mark.parametrize("lease", [-1, 10**40, "7", 2.0, False, MAX_LEASE_ID + 1])
def test_bad_requested_id_is_400(client, lnode, lease):
    code, body = post(client, "/v1/leases", {"ttl": 5, "id": lease})
    assert code == 400 and writes(lnode) == 0


@pytest.mark.parametrize("segment", ["-1", "0", "abc", "1e3", "9" * 40, "%EF%BC%91",
                                     str(MAX_LEASE_ID + 1)])
def test_bad_lease_id_in_url_is_400(client, lnode, segment):
    for method, path in (("GET", f"/v1/leases/{segment}"), ("DELETE", f"/v1/leases/{segment}"),
                         ("POST", f"/v1/leases/{segment}/keepalive")):
        code, body = client.json(method, path)
        assert code == 400 and body["error"] == "MISSING_ARG", (method, path, body)
    assert writes(lnode) == 0 and lnode.calls.get("lease_info", 0) == 0


@pytest.mark.parametrize("data", [b"", b"not json", b"[1,2]", b'"ttl"', b"\xff\xfe",
                                  b"[" * 100_000 + b"]" * 100_000,
                                  b'{"ttl": 5, "extra": 1}', b'{"ttl":' + b"9" * 5000 + b"}",
                                  b'{"ttl": 1e999}'])
def test_non_json_or_odd_bodies_are_refused(client, lnode, data):
    code, body = client.json("POST", "/v1/leases", data)
    assert code in (400, 413) and "error" in body
    assert writes(lnode) == 0


def test_huge_body_is_413(client, lnode):
    data = json.dumps({"ttl": 5, "pad": "x" * 100_000}).encode()
    code, body = client.json("POST", "/v1/leases", data)
    assert code == 413 and writes(lnode) == 0


def test_deeply_nested_json_within_the_cap_is_400(client, lnode):
    code, body = client.json("POST", "/v1/leases", b"[" * 2000 + b"]" * 2000)
    assert code == 400 and writes(lnode) == 0


# -- secrets -------------------------------------------------------------------

def secret_client(node):
    return Client(make_site(node, secrets=Secrets(rw=RW, ro=RO)))


def hdr(secret):
    return {"Authorization": ["Bearer " + secret.decode()]}


def test_read_only_secret_cannot_grant_keepalive_revoke_or_put_with_lease(lnode):
    client = secret_client(lnode)
    lease = post(client, "/v1/leases", {"ttl": 30}, hdr(RW))[1]["id"]
    before = writes(lnode)
    ro = hdr(RO)
    for method, path, data in (("POST", "/v1/leases", b'{"ttl": 5}'),
                               ("POST", f"/v1/leases/{lease}/keepalive", None),
                               ("DELETE", f"/v1/leases/{lease}", None),
                               ("PUT", f"/v1/keys/k?lease={lease}", b"v")):
        code, body = client.json(method, path, data, ro)
        assert code == 403 and "permission denied" in body["detail"], (method, path)
        assert client.json(method, path, data)[0] == 403  # no secret at all
    assert writes(lnode) == before
    assert client.json("GET", f"/v1/leases/{lease}", None, ro)[0] == 200
    assert client.json("GET", "/v1/leases", None, ro)[0] == 200
    assert client.json("GET", "/v1/leases")[0] == 403


def test_cross_origin_grant_is_refused(client, lnode):
    code, _ = post(client, "/v1/leases", {"ttl": 5}, {"Origin": ["http://evil.example"]})
    assert code == 403 and writes(lnode) == 0


# -- the web view ------------------------------------------------------------

def test_leases_page_lists_leases_and_files(client):
    lease = grant(client, 45)["id"]
    client.json("PUT", f"/v1/keys/eph/one?lease={lease}", b"1")
    code, headers, body = client.call("GET", "/leases")
    assert code == 200
    assert headers.getRawHeaders("content-type")[0].startswith("text/html")
    text = body.decode()
    assert f"<td>{lease}</td><td>45</td>" in text
    assert '<li class="ephemeral">/eph/one</li>' in text


def test_leases_page_escapes_hostile_paths():
    info = LeaseInfo(id=3, ttl=9, remaining=1.5,
                     paths=("/a<script>alert(1)</script>", '/b"&\'<>'))
    text = render_leases_page([info]).decode()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "/b&quot;&amp;&#x27;&lt;&gt;" in text
    assert "<td>3</td><td>9</td><td>1.5</td>" in text


def test_leases_page_needs_the_read_secret(lnode):
    client = secret_client(lnode)
    assert client.call("GET", "/leases")[0] == 403
    assert client.call("GET", "/leases", headers=hdr(RO))[0] == 200


def test_node_failure_maps_to_error(lnode):
    lnode.leases = lambda: defer.fail(DoozerError(ErrCode.OTHER, "no quorum"))
    code, body = Client(make_site(lnode)).json("GET", "/v1/leases")
    assert code == 503 and body["detail"] == "no quorum"


def test_ttl_above_a_configured_maximum_is_400():
    node = spy(lease_node())
    client = Client(make_site(node, limits=Limits(max_lease_ttl=60)))
    assert post(client, "/v1/leases", {"ttl": 61})[0] == 400
    assert post(client, "/v1/leases", {"ttl": 60})[0] == 200


def test_lease_expires_on_the_clock_unless_kept_alive(client, clock):
    lease = grant(client, 10)["id"]
    assert client.json("PUT", f"/v1/keys/beat?lease={lease}", b"alive")[0] == 200
    clock.advance(6)
    info = client.json("GET", f"/v1/leases/{lease}")[1]
    assert 3.5 <= info["remaining"] <= 4.5
    body = client.json("POST", f"/v1/leases/{lease}/keepalive")[1]
    assert body["remaining"] == pytest.approx(10, abs=0.5)
    clock.advance(6)
    assert client.json("GET", "/v1/keys/beat")[0] == 200
    clock.advance(30)
    assert client.json("GET", "/v1/keys/beat")[0] == 404
    assert client.json("GET", f"/v1/leases/{lease}")[0] == 404
    assert client.json("POST", f"/v1/leases/{lease}/keepalive")[0] == 404
    assert client.json("GET", "/v1/leases")[1] == {"leases": []}


def test_tree_view_marks_ephemeral_files(client, lnode, clock):
    lease = grant(client, 30)["id"]
    client.json("PUT", f"/v1/keys/eph?lease={lease}", b"1")
    client.json("PUT", "/v1/keys/plain", b"2")
    ws = WebSocketConversation(client.site)
    files = {f["path"]: f for f in ws.messages()[0]["files"]}
    assert files["/eph"]["lease"] == lease and "lease" not in files["/plain"]
    client.json("PUT", f"/v1/keys/eph2?lease={lease}", b"3")
    client.json("PUT", "/v1/keys/eph", b"now plain")
    events = [m for m in ws.messages() if m["type"] == "event"]
    assert [(e["path"], e.get("lease")) for e in events] == [("/eph2", lease), ("/eph", None)]
    client.json("DELETE", f"/v1/leases/{lease}")
    events = [m for m in ws.messages() if m["type"] == "event"]
    assert [(e["path"], e["kind"], "lease" in e) for e in events] == [("/eph2", "del", False)]


@pytest.mark.parametrize("detail", [
    "no leader to keep leases: try again",
    "the leader did not answer about leases within 5s",
    "too many leases: 100000 exist",
])
def test_lease_refusals_a_retry_may_cure_are_503(detail):
    from doozertw.errors import DoozerError, ErrCode
    from doozertw.frontends.web.common import http_status
    assert http_status(DoozerError(ErrCode.OTHER, detail)) == 503
