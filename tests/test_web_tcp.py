"""The web port over real TCP on 127.0.0.1 (ephemeral ports, the global reactor)."""

import json

import pytest
import pytest_twisted
from treq.client import HTTPClient
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, protocol, reactor, task
from twisted.web.client import Agent, HTTPConnectionPool

from doozertw.frontends.access import Secrets
from doozertw.frontends.web import make_web_site
from doozertw.limits import Limits
from doozertw.node import Node


@pytest.fixture
def served():
    node = Node(name="tcp-node")
    site = make_web_site(node, Secrets(), Limits(), reactor=reactor, status_interval=0.2)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    base = f"http://127.0.0.1:{port.getHost().port}"
    yield node, site, base, http
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
    pytest_twisted.blockon(pool.closeCachedConnections())


@defer.inlineCallbacks
def eventually(predicate, timeout=5.0):
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise AssertionError("condition not reached in time")
        yield task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


@pytest_twisted.inlineCallbacks
def test_put_get_and_cas_over_tcp(served):
    node, _, base, http = served
    response = yield http.put(base + "/v1/keys/tcp/key?rev=0", data=b"value")
    assert response.code == 200
    body = yield response.json()
    assert body == {"path": "/tcp/key", "rev": 1}
    response = yield http.put(base + "/v1/keys/tcp/key?rev=0", data=b"again")
    assert response.code == 409
    assert (yield response.json())["error"] == "REV_MISMATCH"
    response = yield http.get(base + "/v1/keys/tcp/key")
    assert (yield response.json())["value"] == "value"
    response = yield http.post(base + "/mostdb/get", data=b'{"key":"/tcp/key"}')
    assert (yield response.json())["result"] == {"key": "/tcp/key", "value": "value"}


class LineCollector(protocol.Protocol):
    def __init__(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data


@pytest_twisted.inlineCallbacks
def test_streamed_watch_over_tcp_and_cleanup_on_disconnect(served):
    node, site, base, _ = served
    port = int(base.rsplit(":", 1)[1])
    client = yield protocol.ClientCreator(reactor, LineCollector).connectTCP("127.0.0.1", port)
    client.transport.write(
        b"GET /v1/watch?glob=/w/** HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
    yield eventually(lambda: node.store.watch_count == 1)
    yield node.set("/w/a", -1, b"one")
    yield node.set("/elsewhere", -1, b"no")
    yield node.set("/w/b", -1, b"two")
    yield eventually(lambda: b'"/w/b"' in client.data)
    assert b"application/x-ndjson" in client.data
    assert b'"/elsewhere"' not in client.data
    client.transport.loseConnection()
    yield eventually(lambda: node.store.watch_count == 0)
    assert site.api.connections == 0


class EventsClient(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.factory.messages.append(json.loads(payload))

    def onClose(self, wasClean, code, reason):
        if not self.factory.closed.called:
            self.factory.closed.callback(code)


@pytest_twisted.inlineCallbacks
def test_websocket_events_over_tcp(served):
    node, site, base, _ = served
    yield node.set("/ws/before", -1, b"old")
    port = int(base.rsplit(":", 1)[1])
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/$events/ws", reactor=reactor)
    factory.protocol = EventsClient
    factory.messages, factory.opened, factory.closed = [], defer.Deferred(), defer.Deferred()
    reactor.connectTCP("127.0.0.1", port, factory)
    ws = yield factory.opened
    yield eventually(lambda: any(m["type"] == "snapshot" for m in factory.messages))
    snapshot = [m for m in factory.messages if m["type"] == "snapshot"][0]
    assert [f["path"] for f in snapshot["files"]] == ["/ws/before"]
    yield node.set("/ws/new", -1, b"fresh")
    yield eventually(lambda: any(m.get("path") == "/ws/new" for m in factory.messages))
    yield eventually(lambda: sum(m["type"] == "status" for m in factory.messages) >= 2)
    ws.sendClose()
    yield factory.closed
    yield eventually(lambda: node.store.watch_count == 0)
    assert site.api.connections == 0
