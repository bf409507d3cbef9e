"""The web port's lean request path (issue 12): every JSON answer carries a
Content-Length (no chunked encoding), keep-alive connections serve many
requests, the per-connection shortcuts (remembered Host, addresses, the
Date formatted once a second, deadline timers armed only for incomplete
requests) refuse exactly what the full checks refuse, and no access log
line is written per request unless asked for.

Everything runs in memory on a task.Clock over StringTransport connections
built by the Site itself.
"""

import io
import json

from twisted.internet.task import Clock
from twisted.web import http

from doozertw.frontends.access import Secrets
from doozertw.frontends.web.conn import http_date, max_body
from doozertw.frontends.web.options import WebOptions
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.web import Conversation, make_site

SECRETS = Secrets(rw=b"rw-secret", ro=b"ro-secret")


def answers(raw):
    """Every response in ``raw`` as (status, headers, body), framed by
    Content-Length only (a chunked or unframed answer fails the test)."""
    out = []
    while raw:
        head, sep, raw = raw.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head {head[:80]!r}"
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"header {name} twice"
            headers[name.lower()] = value.strip()
        assert "transfer-encoding" not in headers, headers
        length = int(headers["content-length"])
        assert len(raw) >= length
        out.append((int(lines[0].split()[1]), headers, raw[:length]))
        raw = raw[length:]
    return out


def exchange(conv, method, path, headers=(), body=b""):
    conv.transport.clear()
    conv.send(method, path, headers, body)
    [answer] = answers(conv.transport.value())
    return answer


# -- Content-Length on JSON answers ---------------------------------------------


def test_json_answers_carry_a_correct_content_length(node):
    conv = Conversation(make_site(node))
    for method, path, body, status in [
            ("PUT", "/v1/keys/a", b"hello", 200),
            ("GET", "/v1/keys/a", b"", 200),
            ("GET", "/v1/keys/missing", b"", 404),
            ("GET", "/v1/rev", b"", 200),
            ("GET", "/v1/walk?glob=/**", b"", 200),
            ("DELETE", "/v1/keys/a", b"", 200),
            ("GET", "/v1/keys/a?rev=x", b"", 400)]:
        code, headers, data = exchange(conv, method, path, body=body)
        assert code == status, (method, path, data)
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        assert int(headers["content-length"]) == len(data)
        assert data.endswith(b"\n")
        json.loads(data)


def test_answers_keep_the_headers_clients_rely_on(node):
    conv = Conversation(make_site(node))
    code, headers, _ = exchange(conv, "PUT", "/v1/keys/a", body=b"v")
    assert code == 200
    assert headers["server"].startswith("TwistedWeb/")
    assert headers["date"].endswith(" GMT")
    code, headers, data = exchange(conv, "GET", "/v1/keys/a",
                                   [("Accept", "application/octet-stream")])
    assert (code, data) == (200, b"v")
    assert headers["x-doozer-rev"] == "1"
    assert headers["content-type"] == "application/octet-stream"


def test_http_date_is_formatted_once_a_second_and_right():
    assert http_date(1_700_000_000) == http.datetimeToString(1_700_000_000)
    assert http_date(1_700_000_000.9) == http.datetimeToString(1_700_000_000)
    assert http_date(1_700_000_001) == http.datetimeToString(1_700_000_001)
    assert http_date(1_700_000_001) is http_date(1_700_000_001.5)  # the cached bytes


# -- keep-alive -----------------------------------------------------------------


def test_many_requests_on_one_connection(node):
    conv = Conversation(make_site(node))
    for i in range(20):
        code, _, data = exchange(conv, "PUT", f"/v1/keys/k{i % 3}", body=b"x" * i)
        assert code == 200 and json.loads(data)["rev"] == i + 1
        code, _, data = exchange(conv, "GET", f"/v1/keys/k{i % 3}")
        assert code == 200 and json.loads(data)["value"] == "x" * i
    assert not conv.transport.disconnecting


def test_pipelined_requests_are_answered_in_order(node):
    conv = Conversation(make_site(node))
    host = b"Host: doozer.test\r\n"
    conv.protocol.dataReceived(
        b"PUT /v1/keys/p HTTP/1.1\r\n" + host + b"Content-Length: 2\r\n\r\nv1"
        + b"GET /v1/keys/p HTTP/1.1\r\n" + host + b"\r\n"
        + b"GET /v1/keys/nope HTTP/1.1\r\n" + host + b"\r\n"
        + b"GET /v1/rev HTTP/1.1\r\n" + host + b"\r\n")
    got = answers(conv.transport.value())
    assert [status for status, _, _ in got] == [200, 200, 404, 200]
    assert json.loads(got[1][2])["value"] == "v1"
    assert json.loads(got[3][2]) == {"rev": 1}
    assert not conv.transport.disconnecting


def test_errors_keep_the_connection_open(node):
    conv = Conversation(make_site(node, secrets=SECRETS))
    assert exchange(conv, "PUT", "/v1/keys/a", body=b"v")[0] == 403     # no secret
    assert exchange(conv, "GET", "/v1/keys/a")[0] == 403
    rw = [("Authorization", "Bearer rw-secret")]
    assert exchange(conv, "PUT", "/v1/keys/a", rw, b"v")[0] == 200
    assert exchange(conv, "GET", "/v1/keys/a", [("X-Doozer-Secret", "ro-secret")])[0] == 200
    assert exchange(conv, "PUT", "/v1/keys/a", [("X-Doozer-Secret", "ro-secret")],
                    b"w")[0] == 403                                    # read-only secret
    assert not conv.transport.disconnecting
    assert node.store.get("/a")[0] == b"v"


def test_connection_close_is_honoured(node):
    conv = Conversation(make_site(node))
    code, headers, _ = exchange(conv, "GET", "/v1/rev", [("Connection", "close")])
    assert code == 200 and headers["connection"] == "close"
    assert conv.transport.disconnecting


# -- the same refusals on a kept-alive connection ----------------------------------


def test_bad_paths_are_refused_after_good_requests(node):
    limits = Limits(max_path=64, max_depth=3)
    conv = Conversation(make_site(node, limits=limits))
    assert exchange(conv, "PUT", "/v1/keys/ok", body=b"v")[0] == 200
    for path in ["/v1/keys/a*b", "/v1/keys/" + "p" * 100, "/v1/keys/a%00b",
                 "/v1/keys/bad%20path", "/v1/keys/a/b/c/d"]:
        code, _, data = exchange(conv, "PUT", path, body=b"v")
        assert code == 400 and json.loads(data)["error"] == "BAD_PATH", path
    assert node.store.rev == 1
    assert exchange(conv, "GET", "/v1/keys/ok")[0] == 200


def test_a_value_over_the_limit_is_refused_on_a_kept_alive_connection(node):
    limits = Limits(max_value=100)
    conv = Conversation(make_site(node, limits=limits))
    assert exchange(conv, "PUT", "/v1/keys/a", body=b"v" * 100)[0] == 200
    code, _, data = exchange(conv, "PUT", "/v1/keys/a", body=b"v" * 101)
    assert code == 413 and "too large" in json.loads(data)["detail"]
    assert exchange(conv, "GET", "/v1/keys/a")[0] == 200        # still open
    conv.transport.clear()
    conv.send("PUT", "/v1/keys/a", body=b"v" * (max_body(limits) + 1))
    assert conv.transport.value().startswith(b"HTTP/1.1 413")
    assert conv.transport.disconnecting                          # past the body cap
    assert node.store.rev == 1


def test_a_remembered_host_does_not_let_another_host_through(node):
    conv = Conversation(make_site(node), host="localhost:8000")
    assert exchange(conv, "PUT", "/v1/keys/a", body=b"v")[0] == 200
    conv.host = "evil.example:8000"
    conv.transport.clear()
    conv.send("PUT", "/v1/keys/a", body=b"w")
    assert conv.transport.value().startswith(b"HTTP/1.1 421")
    conv.host = "localhost:8000"
    assert exchange(conv, "GET", "/v1/keys/a")[0] == 200
    assert node.store.get("/a")[0] == b"v"


def test_a_remembered_host_is_per_connection(node):
    site = make_site(node, options=WebOptions(hosts=("only.example",)))
    good = Conversation(site, host="only.example")
    assert exchange(good, "GET", "/v1/rev")[0] == 200
    other = Conversation(site, host="only.example", local=("10.0.0.1", 8000))
    assert exchange(other, "GET", "/v1/rev")[0] == 200
    bad = Conversation(site, host="10.0.0.2:8000", local=("10.0.0.1", 8000))
    bad.send("GET", "/v1/rev")
    assert bad.transport.value().startswith(b"HTTP/1.1 421")


def test_a_cross_origin_write_is_refused_on_a_kept_alive_connection(node):
    conv = Conversation(make_site(node))
    assert exchange(conv, "PUT", "/v1/keys/a", body=b"v")[0] == 200
    code, _, _ = exchange(conv, "PUT", "/v1/keys/a", [("Origin", "http://evil.example")],
                          b"w")
    assert code == 403
    assert node.store.get("/a")[0] == b"v"


# -- deadlines: a timer only for a request that is not all there -------------------


def test_a_complete_request_leaves_no_deadline_timer(node):
    clock = Clock()
    conv = Conversation(make_site(node, reactor=clock,
                                  options=WebOptions(hosts=("doozer.test",), idle_timeout=60)))
    for _ in range(3):
        assert exchange(conv, "PUT", "/v1/keys/a", body=b"v")[0] == 200
    pending = [c for c in clock.getDelayedCalls() if c.active()]
    assert len(pending) == 1 and pending[0].getTime() == 60    # the idle timeout only


def test_the_header_deadline_counts_from_the_first_byte(node):
    clock = Clock()
    conv = Conversation(make_site(node, reactor=clock, options=WebOptions(
        hosts=("doozer.test",), header_timeout=10, idle_timeout=60)))
    conv.protocol.dataReceived(b"GET /v1/rev HTTP/1.1\r\n")
    clock.advance(6)
    conv.protocol.dataReceived(b"Host: doozer.test\r\n")
    clock.advance(3.9)
    assert not conv.transport.disconnecting
    clock.advance(0.2)                                    # 10.1 s after the first byte
    assert conv.transport.disconnecting
    assert conv.transport.value().startswith(b"HTTP/1.1 408")


def test_the_body_deadline_counts_from_the_headers(node):
    clock = Clock()
    conv = Conversation(make_site(node, reactor=clock, limits=Limits(request_send_timeout=5)))
    conv.protocol.dataReceived(b"PUT /v1/keys/k HTTP/1.1\r\nHost: doozer.test\r\n"
                               b"Content-Length: 10\r\n\r\nvvv")
    clock.advance(3)
    conv.protocol.dataReceived(b"vvv")
    clock.advance(1.9)
    assert not conv.transport.disconnecting
    clock.advance(0.2)
    assert conv.transport.value().startswith(b"HTTP/1.1 408")
    assert b"request body not received within 5 s" in conv.transport.value()
    assert node.store.rev == 0


def test_a_body_sent_in_time_in_pieces_is_written(node):
    clock = Clock()
    conv = Conversation(make_site(node, reactor=clock, limits=Limits(request_send_timeout=5)))
    conv.protocol.dataReceived(b"PUT /v1/keys/k HTTP/1.1\r\nHost: doozer.test\r\n"
                               b"Content-Length: 6\r\n\r\nvvv")
    clock.advance(4)
    conv.protocol.dataReceived(b"www")
    assert answers(conv.transport.value())[0][0] == 200
    clock.advance(10)
    assert not conv.transport.disconnecting
    assert node.store.get("/k")[0] == b"vvvwww"


# -- the access log --------------------------------------------------------------


def logged_lines(node, **options):
    site = make_site(node, options=WebOptions(hosts=("doozer.test",), **options))
    site.startFactory()
    try:
        site.logFile = io.StringIO()
        conv = Conversation(site)
        exchange(conv, "PUT", "/v1/keys/a", body=b"v")
        exchange(conv, "GET", "/v1/keys/a")
        return site.logFile.getvalue().splitlines()
    finally:
        site.stopFactory()


def test_no_access_log_line_per_request_by_default(node):
    assert logged_lines(node) == []


def test_the_access_log_can_be_turned_on(node):
    lines = logged_lines(node, access_log=True)
    assert len(lines) == 2
    assert '"PUT /v1/keys/a HTTP/1.1" 200' in lines[0]
    assert '"GET /v1/keys/a HTTP/1.1" 200' in lines[1]


def test_connection_addresses_are_looked_up_once(node):
    conv = Conversation(make_site(node))
    calls = []
    real = conv.transport.getHost

    def counted():
        calls.append(1)
        return real()

    conv.transport.getHost = counted
    for _ in range(3):
        assert exchange(conv, "GET", "/v1/rev")[0] == 200
    assert len(calls) <= 1


def proposal_count(site, node):
    return site.metrics.registry.get_sample_value(
        "doozer_proposal_latency_seconds_count", {"node": node.name}) or 0


def test_web_writes_are_timed_only_for_a_node_that_reports_nothing(node):
    site = make_site(node)
    assert site.api.observe_write is None                 # the node times its proposals
    assert exchange(Conversation(site), "PUT", "/v1/keys/a", body=b"v")[0] == 200
    assert proposal_count(site, node) == 1                # counted once, by the node

    class Quiet:
        """A node without ``proposal_observers``."""

        def __init__(self, node):
            self._node = node

        def __getattr__(self, name):
            if name == "proposal_observers":
                raise AttributeError(name)
            return getattr(self._node, name)

    quiet = Quiet(Node(name="quiet", store=Store(history=100)))
    site = make_site(quiet)
    assert site.api.observe_write is not None
    conv = Conversation(site)
    assert exchange(conv, "PUT", "/v1/keys/a", body=b"v")[0] == 200
    assert exchange(conv, "DELETE", "/v1/keys/a")[0] == 200
    assert proposal_count(site, quiet) == 2
