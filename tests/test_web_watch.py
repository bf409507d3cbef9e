"""GET /v1/watch: the streamed (NDJSON) watch over real twisted.web Requests in memory."""


from doozertw.frontends.access import Secrets
from doozertw.testing.web import Conversation, make_site
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store


def test_watch_streams_live_changes_as_ndjson(node):
    site = make_site(node)
    c = Conversation(site)
    c.send("GET", "/v1/watch?glob=/a/**")
    status, headers, _ = c.response()
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    node.set("/a/x", -1, b"1")
    node.set("/b", -1, b"ignored")
    node.delete("/a/x", -1)
    assert c.lines() == [
        {"path": "/a/x", "rev": 1, "kind": "set", "value": "1", "encoding": "utf-8"},
        {"path": "/a/x", "rev": 3, "kind": "del", "value": "", "encoding": "utf-8"},
    ]
    assert site.api.connections == 1


def test_watch_from_past_revision_replays_history_then_follows(node):
    for i in range(3):
        node.set("/k", -1, str(i).encode())
    c = Conversation(make_site(node))
    c.send("GET", "/v1/watch?glob=/k&rev=2")
    node.set("/k", -1, b"live")
    assert [(e["rev"], e["value"]) for e in c.lines()] == [(2, "1"), (3, "2"), (4, "live")]


def test_watch_too_old_is_410():
    node = Node(store=Store(history=2))
    for i in range(5):
        node.set("/k", -1, str(i).encode())
    c = Conversation(make_site(node))
    c.send("GET", "/v1/watch?glob=/k&rev=1")
    status, _, body = c.response()
    assert status == 410 and b"TOO_LATE" in body
    assert node.store.watch_count == 0


def test_watch_needs_read_rights(node):
    c = Conversation(make_site(node, secrets=Secrets(rw=b"s")))
    c.send("GET", "/v1/watch?glob=/**")
    assert c.response()[0] == 403
    assert node.store.watch_count == 0


def test_disconnect_cancels_the_watch(node):
    site = make_site(node)
    c = Conversation(site)
    c.send("GET", "/v1/watch?glob=/**")
    assert node.store.watch_count == 1
    c.disconnect()
    assert node.store.watch_count == 0
    assert site.api.connections == 0
    before = c.transport.value()
    node.set("/after", -1, b"x")
    assert c.transport.value() == before


def test_slow_reader_is_cut_off_when_buffer_overflows(node):
    site = make_site(node, limits=Limits(max_output_buffer=200))
    c = Conversation(site)
    c.send("GET", "/v1/watch?glob=/**")
    c.transport.producer.pauseProducing()          # the transport's buffer is full
    node.set("/a", -1, b"x")
    assert c.lines() == []               # queued, not written
    c.transport.producer.resumeProducing()
    assert [e["path"] for e in c.lines()] == ["/a"]
    c.transport.producer.pauseProducing()
    for _ in range(10):
        node.set("/a", -1, b"y" * 30)
    c.transport.producer.resumeProducing()
    lines = c.lines()
    assert lines[-1]["detail"] == "watcher too slow; output buffer full"
    assert node.store.watch_count == 0
