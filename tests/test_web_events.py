"""The websocket event stream at /$events/<path>, driven in memory with raw frames."""


from doozertw.frontends.access import Secrets
from doozertw.testing.web import WebSocketConversation, make_site
from doozertw.node import Node
from doozertw.store import Store


def of_type(messages, kind):
    return [m for m in messages if m["type"] == kind]


def test_snapshot_then_every_change(node):
    node.set("/a/x", -1, b"1")
    node.set("/b", -1, b"\xff")
    site = make_site(node)
    ws = WebSocketConversation(site)
    assert ws.status == 101
    first = ws.messages()
    assert first[0] == {"type": "snapshot", "rev": 2, "epoch": site.api.epoch, "path": "/",
                        "files": [
        {"path": "/a/x", "rev": 1, "value": "1", "encoding": "utf-8"},
        {"path": "/b", "rev": 2, "value": "/w==", "encoding": "base64"}], "more": False}
    node.set("/a/x", -1, b"2")
    node.delete("/b", -1)
    events = of_type(ws.messages(), "event")
    assert events == [
        {"type": "event", "path": "/a/x", "rev": 3, "kind": "set", "value": "2",
         "encoding": "utf-8"},
        {"type": "event", "path": "/b", "rev": 4, "kind": "del", "value": "", "encoding": "utf-8"}]
    assert site.api.connections == 1


def test_subtree_view_sees_only_its_subtree(node):
    node.set("/ctl/name", -1, b"c")
    node.set("/ctlx", -1, b"not below /ctl")
    ws = WebSocketConversation(make_site(node), "/$events/ctl")
    snapshot = ws.messages()[0]
    assert snapshot["path"] == "/ctl"
    assert [f["path"] for f in snapshot["files"]] == ["/ctl/name"]
    node.set("/ctl/node/n1/addr", -1, b"x")
    node.set("/other", -1, b"y")
    assert [e["path"] for e in of_type(ws.messages(), "event")] == ["/ctl/node/n1/addr"]


def test_subtree_of_a_single_file(node):
    ws = WebSocketConversation(make_site(node), "/$events/message")
    assert ws.messages()[0]["files"] == []
    node.set("/message", -1, b"hi")
    node.set("/message2", -1, b"no")
    assert [e["path"] for e in of_type(ws.messages(), "event")] == ["/message"]


def test_resume_from_revision_sends_missed_events_without_snapshot(node):
    for i in range(4):
        node.set("/k", -1, str(i).encode())
    site = make_site(node)
    ws = WebSocketConversation(site, f"/$events?since=3&epoch={site.api.epoch}")
    messages = ws.messages()
    assert messages[0] == {"type": "resumed", "rev": 3, "epoch": site.api.epoch}
    assert [(e["rev"], e["value"]) for e in of_type(messages, "event")] == [(3, "2"), (4, "3")]
    assert of_type(messages, "snapshot") == []


def test_resume_beyond_history_falls_back_to_snapshot():
    node = Node(store=Store(history=2))
    for i in range(6):
        node.set("/k", -1, str(i).encode())
    site = make_site(node)
    ws = WebSocketConversation(site, f"/$events?since=2&epoch={site.api.epoch}")
    messages = ws.messages()
    assert messages[0]["type"] == "snapshot" and messages[0]["rev"] == 6
    assert node.store.watch_count == 1


def test_status_messages_on_the_clock(node):
    site = make_site(node, status_interval=1.0)
    ws = WebSocketConversation(site)
    status = of_type(ws.messages(), "status")
    assert len(status) == 1 and status[0]["cluster"]["leader"] == node.name
    node.set("/w", -1, b"x")
    site.api.reactor.advance(1.0)
    status = of_type(ws.messages(), "status")
    assert len(status) == 1
    assert status[0]["writes"] == 1 and status[0]["rev"] == 1 and status[0]["time"] == 1.0


def test_secret_required_before_streaming(node):
    node.set("/s", -1, b"secret data")
    ws = WebSocketConversation(make_site(node, secrets=Secrets(rw=b"pw")))
    messages = ws.messages()
    assert messages == [{"type": "error", "error": "OTHER", "code": 127,
                         "detail": "permission denied"}]
    assert node.store.watch_count == 0
    ws.send_json({"type": "access", "secret": "wrong"})
    assert ws.messages() == [{"type": "access", "ok": False, "can_read": False,
                              "can_write": False}]
    ws.send_json({"type": "access", "secret": "pw"})
    messages = ws.messages()
    assert messages[0] == {"type": "access", "ok": True, "can_read": True, "can_write": True}
    assert messages[1]["type"] == "snapshot" and messages[1]["files"][0]["path"] == "/s"


def test_unknown_message_is_an_error(node):
    ws = WebSocketConversation(make_site(node))
    ws.messages()
    ws.send_json({"type": "hello"})
    assert ws.messages()[0]["error"] == "UNKNOWN_VERB"


def test_bad_path_is_refused(node):
    ws = WebSocketConversation(make_site(node), "/$events/bad%20path")
    messages = ws.messages()
    assert messages[0]["error"] == "BAD_PATH"
    assert ws.closed_with == 4400
    assert node.store.watch_count == 0


def test_disconnect_removes_watches_and_stops_status(node):
    site = make_site(node)
    ws = WebSocketConversation(site, "/$events/a")
    assert node.store.watch_count == 2
    ws.drop()
    assert node.store.watch_count == 0
    assert site.api.connections == 0
    assert site.api.reactor.getDelayedCalls() == [] or all(
        not c.active() for c in site.api.reactor.getDelayedCalls())


def test_slow_browser_is_closed_when_its_buffer_overflows(node):
    from doozertw.limits import Limits
    site = make_site(node, limits=Limits(max_output_buffer=300))
    ws = WebSocketConversation(site)
    ws.messages()
    ws.transport.producer.pauseProducing()
    for _ in range(10):
        node.set("/k", -1, b"v" * 40)
    assert ws.messages() == []
    assert ws.closed_with == 4408
    assert node.store.watch_count == 0


def test_resume_from_the_future_gets_a_snapshot(node):
    node.set("/k", -1, b"v")
    site = make_site(node)
    ws = WebSocketConversation(site, f"/$events?since=50&epoch={site.api.epoch}")
    messages = ws.messages()
    assert messages[0]["type"] == "snapshot" and messages[0]["rev"] == 1


def test_resume_at_next_revision_waits_for_it(node):
    node.set("/k", -1, b"v")
    site = make_site(node)
    ws = WebSocketConversation(site, f"/$events?since=2&epoch={site.api.epoch}")
    assert ws.messages()[0] == {"type": "resumed", "rev": 2, "epoch": site.api.epoch}
    node.set("/k", -1, b"w")
    assert [e["rev"] for e in of_type(ws.messages(), "event")] == [2]


def test_resume_against_another_epoch_gets_a_snapshot(node):
    node.set("/k", -1, b"v")
    node.set("/k", -1, b"w")
    ws = WebSocketConversation(make_site(node), "/$events?since=2&epoch=someone-else")
    messages = ws.messages()
    assert messages[0]["type"] == "snapshot" and messages[0]["rev"] == 2


def test_cross_origin_websocket_is_refused(node):
    ws = WebSocketConversation(make_site(node), headers=[("Origin", "http://evil.example")])
    assert ws.status == 403
    assert node.store.watch_count == 0
    same = WebSocketConversation(make_site(node), headers=[("Origin", "http://doozer.test")])
    assert same.status == 101


def test_connection_lost_before_handshake_is_harmless(node):
    from twisted.internet.error import ConnectionLost
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure
    site = make_site(node)
    protocol = site.events_factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(b"GET /$events HTTP/1.1\r\n")
    protocol.connectionLost(Failure(ConnectionLost()))
    assert site.api.connections == 0 and node.store.watch_count == 0
