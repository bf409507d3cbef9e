"""The web port against hostile clients: Host allowlist, slow and idle
connections, connection caps, protected metrics, large values and snapshots
on the websocket, and watchers that fail (issue 9).

Everything runs in memory on a task.Clock (StringTransport connections
built by the Site itself, so the channel, the gate and the Host check are
the ones a real socket gets).
"""

import json

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from doozertw.frontends.access import Secrets
from doozertw.frontends.web.conn import max_body
from doozertw.frontends.web.events import MAX_CLIENT_MESSAGE, SNAPSHOT_PAGE
from doozertw.frontends.web.hosts import HostPolicy, split_host
from doozertw.frontends.web.options import WebOptionError, WebOptions, parse_hosts
from doozertw.testing.web import Conversation, WebSocketConversation, make_site
from doozertw.limits import Limits

KIB = 1024


def site_with(node, clock=None, **options):
    """A site with default Host rules (no extra names) unless ``hosts`` is given."""
    return make_site(node, options=WebOptions(**options), reactor=clock or Clock())


def status_of(conversation):
    return conversation.response()[0]


# -- Host allowlist (DNS rebinding) ---------------------------------------------


def test_wrong_host_is_refused_for_get(node):
    node.set("/secret", -1, b"s3cret")
    conv = Conversation(site_with(node), host="evil.example:8000")
    conv.send("GET", "/v1/keys/secret")
    status, headers, body = conv.response()
    assert status == 421
    assert b"not allowed" in body and b"--web-host" in body
    assert b"s3cret" not in body


def test_wrong_host_is_refused_for_put_and_nothing_is_written(node):
    conv = Conversation(site_with(node), host="evil.example:8000")
    conv.send("PUT", "/v1/keys/pwned", body=b"x")
    assert status_of(conv) == 421
    assert node.store.rev == 0


def test_wrong_host_is_refused_for_the_static_page_and_metrics(node):
    site = site_with(node)
    for path in ("/", "/metrics", "/health", "/mostdb/get"):
        conv = Conversation(site, host="evil.example:8000")
        conv.send("GET", path)
        assert status_of(conv) == 421, path


def test_wrong_host_is_refused_for_a_websocket_upgrade(node):
    site = site_with(node)
    ws = WebSocketConversation(site, host="evil.example:8000", via_site=True)
    assert ws.status == 421
    assert ws.events is None
    assert node.store.watch_count == 0


def test_the_events_factory_checks_host_by_itself(node):
    ws = WebSocketConversation(site_with(node), host="evil.example:8000")
    assert ws.status == 421
    assert node.store.watch_count == 0


@pytest.mark.parametrize("host", [
    "127.0.0.1:8000", "localhost:8000", "LOCALHOST.:8000", "[::1]:8000", "[0:0::1]:8000"])
def test_loopback_hosts_with_the_port_are_allowed(node, host):
    conv = Conversation(site_with(node), host=host)
    conv.send("GET", "/v1/rev")
    assert status_of(conv) == 200


@pytest.mark.parametrize("host", [
    "localhost:8001", "127.0.0.1", "localhost", "127.0.0.2:8000", "evil.example:8000",
    "10.1.2.3:8000", "", "localhost:99999", "[::1", "a:b:c"])
def test_other_hosts_and_ports_are_refused(node, host):
    conv = Conversation(site_with(node), host=host)
    conv.send("GET", "/v1/rev")
    assert status_of(conv) == 421


def test_the_address_the_connection_arrived_at_is_allowed(node):
    """A port bound to 0.0.0.0: whichever local address the client dialled."""
    site = site_with(node)
    conv = Conversation(site, host="10.1.2.3:8000", local=("10.1.2.3", 8000))
    conv.send("GET", "/v1/rev")
    assert status_of(conv) == 200
    conv = Conversation(site, host="10.9.9.9:8000", local=("10.1.2.3", 8000))
    conv.send("GET", "/v1/rev")
    assert status_of(conv) == 421


def test_a_host_without_port_means_port_80(node):
    conv = Conversation(site_with(node), host="localhost", local=("127.0.0.1", 80))
    conv.send("GET", "/v1/rev")
    assert status_of(conv) == 200


def test_configured_names_are_allowed(node):
    site = site_with(node, hosts=("doozer.internal", "proxy.example:443"))
    for host, expected in (("doozer.internal:8000", 200), ("doozer.internal:1234", 200),
                           ("proxy.example:443", 200), ("proxy.example:8000", 421),
                           ("other.example:8000", 421)):
        conv = Conversation(site, host=host)
        conv.send("GET", "/v1/rev")
        assert status_of(conv) == expected, host
    ws = WebSocketConversation(site, host="doozer.internal:8000", via_site=True)
    assert ws.status == 101 and ws.events is not None


def test_star_disables_the_check(node):
    conv = Conversation(site_with(node, hosts=("*",)), host="evil.example:8000")
    conv.send("GET", "/v1/rev")
    assert status_of(conv) == 200


def test_a_request_without_host_is_refused(node):
    site = site_with(node)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1),
                                hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
    protocol = site.buildProtocol(transport.getPeer())
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /v1/rev HTTP/1.0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.0 421")


def test_host_parsing():
    assert split_host("Example.COM.:80") == ("example.com", 80)
    assert split_host("[::FFFF:127.0.0.1]:8") == ("127.0.0.1", 8)
    assert split_host("host:0") == (None, None)
    assert parse_hosts("a, b:9 ,,a") == ("a", "b:9")
    with pytest.raises(WebOptionError):
        parse_hosts(["http://x/"])
    policy = HostPolicy(("x.example",))
    assert policy.allows(b"x.example", None)
    assert not policy.allows(None, None)


def test_web_options_from_the_file_and_the_command_line(tmp_path):
    from doozertw import config, tap

    parsed = config.parse({"web_hosts": ["Doozer.Example", "proxy:443"], "protect_metrics": True,
                           "web_limits": {"header_timeout": 5, "max_connections": 9}})
    assert parsed.web == WebOptions(hosts=("doozer.example", "proxy:443"), protect_metrics=True,
                                    header_timeout=5, max_connections=9)
    with pytest.raises(config.ConfigError):
        config.parse({"web_limits": {"header_timout": 5}})
    with pytest.raises(config.ConfigError):
        config.parse({"web_limits": {"idle_timeout": 0}})
    with pytest.raises(config.ConfigError):
        config.parse({"protect_metrics": "yes"})
    path = tmp_path / "c.yaml"
    path.write_text("web_hosts: [from-file]\n")
    options = tap.Options()
    options.parseOptions(["--in-memory", "--config", str(path), "--web-host", "a,b:9",
                          "--web-host", "c", "--protect-metrics"])
    assert options.cluster.web.hosts == ("a", "b:9", "c")
    assert options.cluster.web.protect_metrics
    _, top = tap.build(options.cluster, options.node)
    site = [s for s in top if getattr(s, "description", "") == config.DEFAULT_WEB][0].factory
    assert site.options.hosts == ("a", "b:9", "c")


# -- slow and idle connections -----------------------------------------------


def trickle(conv, clock, data, seconds_per_byte=1.0):
    for i in range(len(data)):
        if conv.transport.disconnecting:
            return i
        conv.protocol.dataReceived(data[i:i + 1])
        clock.advance(seconds_per_byte)
    return len(data)


def test_slowloris_headers_are_closed_after_the_header_timeout(node):
    clock = Clock()
    conv = Conversation(site_with(node, clock, header_timeout=10, idle_timeout=60))
    request = b"GET /v1/rev HTTP/1.1\r\nHost: localhost:8000\r\nX-Padding: " + b"a" * 100
    sent = trickle(conv, clock, request)
    assert conv.transport.disconnecting
    assert 9 <= sent <= 11
    assert conv.transport.value().startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"request headers not received within 10 s" in conv.transport.value()


def test_a_trickled_body_is_closed_after_the_request_timeout(node):
    clock = Clock()
    site = make_site(node, limits=Limits(request_send_timeout=5), reactor=clock)
    conv = Conversation(site)
    conv.protocol.dataReceived(b"PUT /v1/keys/k HTTP/1.1\r\nHost: doozer.test\r\n"
                               b"Content-Length: 100\r\n\r\n")
    sent = trickle(conv, clock, b"v" * 100)
    assert conv.transport.disconnecting and sent <= 6
    assert b"408 Request Timeout" in conv.transport.value()
    assert node.store.rev == 0


def test_a_prompt_client_is_not_timed_out_across_requests(node):
    clock = Clock()
    conv = Conversation(site_with(node, clock, header_timeout=10, idle_timeout=60),
                        host="localhost:8000")
    for _ in range(5):
        conv.send("GET", "/v1/rev")
        clock.advance(9)
    assert not conv.transport.disconnecting
    assert conv.transport.value().count(b"HTTP/1.1 200 OK") == 5


def test_an_idle_keep_alive_connection_is_closed(node):
    clock = Clock()
    conv = Conversation(site_with(node, clock, idle_timeout=30), host="localhost:8000")
    conv.send("GET", "/v1/rev")
    assert status_of(conv) == 200
    clock.advance(29)
    assert not conv.transport.disconnecting
    clock.advance(2)
    assert conv.transport.disconnecting


def test_a_connection_that_never_sends_is_closed_when_idle(node):
    clock = Clock()
    conv = Conversation(site_with(node, clock, idle_timeout=30))
    clock.advance(31)
    assert conv.transport.disconnecting


def test_an_oversized_declared_body_is_refused_before_it_is_read(node):
    conv = Conversation(make_site(node))
    too_big = max_body(Limits()) + 1
    conv.protocol.dataReceived(b"PUT /v1/keys/k HTTP/1.1\r\nHost: doozer.test\r\n"
                               b"Content-Length: %d\r\n\r\n" % too_big)
    assert conv.transport.value().startswith(b"HTTP/1.1 413")
    assert conv.transport.disconnecting


def test_an_oversized_chunked_body_is_refused(node):
    conv = Conversation(make_site(node, limits=Limits(max_value=1000)))
    conv.protocol.dataReceived(b"PUT /v1/keys/k HTTP/1.1\r\nHost: doozer.test\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (4096, b"v" * 4096)
    for _ in range(4):
        conv.protocol.dataReceived(chunk)
    conv.protocol.dataReceived(b"0\r\n\r\n")
    assert conv.transport.value().startswith(b"HTTP/1.1 413")
    assert conv.transport.disconnecting
    assert node.store.rev == 0


# -- connection caps -----------------------------------------------------------


def connect(site, source, port=50000):
    transport = StringTransport(peerAddress=IPv4Address("TCP", source, port),
                                hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
    protocol = site.buildProtocol(transport.getPeer())
    protocol.makeConnection(transport)
    return transport, protocol


def refused(transport):
    return transport.value().startswith(b"HTTP/1.1 503") and transport.disconnecting


def test_connections_per_source_are_capped(node):
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    site = site_with(node, max_connections_per_source=2)
    first = [connect(site, "10.0.0.1", p) for p in (1, 2)]
    assert not any(refused(t) for t, _ in first)
    third, _ = connect(site, "10.0.0.1", 3)
    assert refused(third)
    assert b"too many web connections from this address" in third.value()
    other, _ = connect(site, "10.0.0.2", 1)
    assert not refused(other)
    first[0][1].connectionLost(Failure(ConnectionDone()))
    again, _ = connect(site, "10.0.0.1", 4)
    assert not refused(again)
    assert site.gate.by_source == {"10.0.0.1": 2, "10.0.0.2": 1}


def test_connections_per_node_are_capped(node):
    site = site_with(node, max_connections=3)
    for i in range(3):
        assert not refused(connect(site, f"10.0.1.{i}")[0])
    transport, _ = connect(site, "10.0.1.99")
    assert refused(transport) and b"limit 3" in transport.value()
    assert site.gate.open == 3


def test_an_upgraded_websocket_stays_counted_until_it_closes(node):
    site = site_with(node, max_connections_per_source=1)
    ws = WebSocketConversation(site, host="localhost:8000", via_site=True)
    assert ws.status == 101
    assert refused(connect(site, "127.0.0.1")[0])
    ws.drop()
    assert site.gate.open == 0
    assert not refused(connect(site, "127.0.0.1")[0])


# -- protected metrics -----------------------------------------------------------


SECRETS = Secrets(rw=b"rw-secret", ro=b"ro-secret")


def get(site, path, headers=()):
    conv = Conversation(site)
    conv.send("GET", path, headers)
    return conv.response()


def test_metrics_and_health_are_open_by_default_even_with_secrets(node):
    site = make_site(node, secrets=SECRETS)
    assert get(site, "/metrics")[0] == 200
    assert get(site, "/health")[0] == 200


def test_protected_metrics_and_health_need_the_read_secret(node):
    site = make_site(node, secrets=SECRETS,
                     options=WebOptions(hosts=("doozer.test",), protect_metrics=True))
    for path in ("/metrics", "/health"):
        status, _, body = get(site, path)
        assert status == 403 and b"permission denied" in body, path
        assert get(site, path, [("Authorization", "Bearer ro-secret")])[0] == 200
        assert get(site, path, [("X-Doozer-Secret", "rw-secret")])[0] == 200
        assert get(site, path, [("Authorization", "Bearer wrong")])[0] == 403
    status, _, body = get(site, "/metrics", [("Authorization", "Bearer ro-secret")])
    assert b"doozer_revision" in body
    assert get(site, "/livez")[0] == 200
    assert get(site, "/readyz")[0] == 200


# -- websocket: large values, large snapshots, failing watchers ----------------


def of_type(messages, kind):
    return [m for m in messages if m["type"] == kind]


def test_a_512_kib_value_reaches_a_websocket_watcher(node):
    ws = WebSocketConversation(make_site(node))
    ws.messages()
    value = "x" * (512 * KIB)
    d = node.set("/big", -1, value.encode())
    assert d.called and not isinstance(d.result, Exception)
    events = of_type(ws.messages(), "event")
    assert len(events) == 1 and events[0]["value"] == value
    assert ws.closed_with is None


def test_a_max_value_that_escapes_sixfold_reaches_a_watcher(node):
    """1 MiB of control characters is 6 MiB of JSON: still one message."""
    ws = WebSocketConversation(make_site(node))
    ws.messages()
    value = b"\x01" * Limits().max_value
    node.set("/ctl-chars", -1, value)
    events = of_type(ws.messages(), "event")
    assert len(events) == 1 and events[0]["value"].encode() == value


def snapshot_messages(messages):
    return [m for m in messages if m["type"] in ("snapshot", "snapshot_page")]


def test_a_200_kib_subtree_is_delivered_in_pages(node):
    for i in range(200):
        node.set(f"/big/f{i:03d}", -1, bytes([65 + i % 26]) * KIB)
    node.set("/elsewhere", -1, b"not in the subtree")
    ws = WebSocketConversation(make_site(node), "/$events/big")
    pages = snapshot_messages(ws.messages())
    assert len(pages) >= 3
    assert pages[0]["type"] == "snapshot" and pages[0]["path"] == "/big"
    assert all(p["type"] == "snapshot_page" for p in pages[1:])
    assert [p["more"] for p in pages] == [True] * (len(pages) - 1) + [False]
    assert {p["rev"] for p in pages} == {201}
    for page in pages:
        assert len(json.dumps(page)) < SNAPSHOT_PAGE + 2 * KIB
    paths = [f["path"] for p in pages for f in p["files"]]
    assert paths == [f"/big/f{i:03d}" for i in range(200)]
    node.set("/big/f000", -1, b"new")
    assert [e["rev"] for e in of_type(ws.messages(), "event")] == [202]


class PausingTransport(StringTransport):
    """Pauses its producer once more than ``limit`` bytes are unread, as TCP does."""

    def __init__(self, limit):
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40002),
                         hostAddress=IPv4Address("TCP", "127.0.0.1", 8000))
        self.limit = limit

    def write(self, data):
        super().write(data)
        if self.producer is not None and len(self.value()) > self.limit:
            self.producer.pauseProducing()


def test_snapshot_pages_are_written_only_as_the_client_reads(node):
    for i in range(64):
        node.set(f"/t/f{i:02d}", -1, b"v" * (16 * KIB))
    transport = PausingTransport(limit=SNAPSHOT_PAGE)
    site = make_site(node)
    ws = WebSocketConversation(site, "/$events/t", transport=transport)
    assert len(snapshot_messages(ws.messages())) == 1   # then the transport pushed back
    assert ws.events.queue.queued_bytes == 0             # and no page was encoded ahead
    node.set("/t/f00", -1, b"changed while streaming")    # held until the snapshot ends
    node.set("/t/new", -1, b"also")
    received = []
    for _ in range(100):
        messages = ws.messages()
        received += messages
        if any(m.get("more") is False for m in received):
            break
        site.api.reactor.advance(1)  # status ticks wait for the snapshot's end
        transport.producer.resumeProducing()
    pages = snapshot_messages(received)
    assert len(pages) >= 3 and pages[-1]["more"] is False
    assert all(m["type"] == "snapshot_page" for m in received[:len(pages) - 1])
    transport.producer.resumeProducing()
    received += ws.messages()
    events = of_type(received, "event")
    assert [(e["path"], e["rev"]) for e in events] == [("/t/f00", 65), ("/t/new", 66)]
    first_event = received.index(events[0])
    assert received.index(pages[-1]) < first_event


def test_changes_held_during_a_snapshot_are_bounded(node):
    for i in range(8):
        node.set(f"/h/f{i}", -1, b"v" * (32 * KIB))
    transport = PausingTransport(limit=1)
    site = make_site(node, limits=Limits(max_output_buffer=100 * KIB))
    ws = WebSocketConversation(site, "/$events/h", transport=transport)
    for _ in range(5):
        node.set("/h/f0", -1, b"w" * (32 * KIB))
    ws.messages()
    assert ws.closed_with == 4408
    assert node.store.watch_count == 0


def test_a_failing_websocket_watcher_does_not_break_a_write(node):
    site = make_site(node)
    failing = WebSocketConversation(site)
    healthy = WebSocketConversation(site)
    failing.messages(), healthy.messages()

    def boom(*args, **kwargs):
        raise RuntimeError("browser went wrong")

    failing.events.sendMessage = boom
    d = node.set("/k", -1, b"v")
    assert d.called
    results = []
    d.addBoth(results.append)
    assert results == [1]
    assert [e["path"] for e in of_type(healthy.messages(), "event")] == ["/k"]
    failing.messages()
    assert failing.closed_with == 4500
    assert node.store.watch_count == 1  # the healthy watcher's only
    d = node.set("/k", -1, b"again")
    assert d.result == 2
    assert [e["rev"] for e in of_type(healthy.messages(), "event")] == [2]


def test_a_failing_streamed_watch_does_not_break_a_write(node, monkeypatch):
    from doozertw.frontends.web import common

    site = make_site(node)
    conv = Conversation(site)
    conv.send("GET", "/v1/watch?glob=/**")
    assert node.store.watch_count == 1 and site.api.connections == 1

    def boom(event):
        raise RuntimeError("cannot encode")

    monkeypatch.setattr(common, "event_fields", boom)
    d = node.set("/k", -1, b"v")
    results = []
    d.addBoth(results.append)
    assert results == [1]
    assert node.store.watch_count == 0
    assert site.api.connections == 0                    # the stream was ended...
    assert conv.transport.value().endswith(b"0\r\n\r\n")  # ...with its last chunk


@pytest.mark.parametrize("fragment", [None, 16 * KIB])
def test_a_client_message_over_the_limit_is_refused(node, fragment):
    """One big frame, or small frames adding up to a big message."""
    ws = WebSocketConversation(make_site(node))
    ws.messages()
    ws.send_json({"type": "access", "secret": "x" * (MAX_CLIENT_MESSAGE + 10)}, fragment)
    assert of_type(ws.messages(), "access") == []
    assert ws.transport.disconnecting  # autobahn fails the connection by dropping it


def test_a_fragmented_client_message_under_the_limit_is_accepted(node):
    ws = WebSocketConversation(make_site(node, secrets=SECRETS))
    ws.messages()
    ws.send_json({"type": "access", "secret": "ro-secret", "pad": "x" * 40000}, 1000)
    assert of_type(ws.messages(), "access")[0]["can_read"] is True


# -- the same over real sockets (127.0.0.1, ephemeral ports, the global reactor) --


@pytest.fixture
def served_tcp(node):
    from twisted.internet import defer, reactor

    from doozertw.frontends.web import make_web_site

    site = make_web_site(node, Secrets(), Limits(), reactor=reactor,
                         options=WebOptions(header_timeout=0.3))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield site, port.getHost().port
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def raw_exchange(port, data, wait):
    """Send ``data`` on a new TCP connection; (bytes received, closed?) after ``wait`` s."""
    from twisted.internet import protocol, reactor, task

    class Collect(protocol.Protocol):
        received, closed = b"", False

        def dataReceived(self, chunk):
            self.received += chunk

        def connectionLost(self, reason):
            self.closed = True

    def go(client):
        client.transport.write(data)
        return task.deferLater(reactor, wait, lambda: (client.received, client.closed))

    return protocol.ClientCreator(reactor, Collect).connectTCP("127.0.0.1", port).addCallback(go)


@pytest_twisted.inlineCallbacks
def test_tcp_wrong_host_refused_and_own_address_allowed(served_tcp):
    _, port = served_tcp
    evil, _ = yield raw_exchange(
        port, b"GET /v1/rev HTTP/1.1\r\nHost: evil.example:%d\r\n\r\n" % port, 0.2)
    assert evil.startswith(b"HTTP/1.1 421")
    ok, _ = yield raw_exchange(
        port, b"GET /v1/rev HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port, 0.2)
    assert ok.startswith(b"HTTP/1.1 200")


@pytest_twisted.inlineCallbacks
def test_tcp_half_sent_headers_are_closed(served_tcp):
    _, port = served_tcp
    received, closed = yield raw_exchange(
        port, b"GET /v1/rev HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port, 0.8)
    assert closed and received.startswith(b"HTTP/1.1 408")


def test_a_failing_status_tick_closes_only_that_client(node):
    site = make_site(node)
    failing = WebSocketConversation(site)
    healthy = WebSocketConversation(site)
    failing.messages(), healthy.messages()

    def broken():
        raise RuntimeError("status source broke")

    failing.events.web = type("Web", (), {"node": node, "reactor": site.api.reactor,
                                          "status": staticmethod(broken)})()
    site.api.reactor.advance(1)
    failing.messages()
    assert failing.closed_with == 4500
    assert of_type(healthy.messages(), "status")
    site.api.reactor.advance(1)  # the failed client's ticker is stopped, nothing raises
