"""The ``$events`` websocket resource loads Autobahn on first use
(doozertw.frontends.web.lazy_events): a node that never serves a websocket
never pays for it."""

import subprocess
import sys

import pytest

from doozertw.frontends.web.lazy_events import LazyEventsResource
from doozertw.frontends.web.site import WebSite
from doozertw.testing.web import Conversation, WebSocketConversation, make_site


def status_of(conv):
    return int(conv.transport.value().split(b" ", 2)[1])


def test_the_real_resource_waits_for_the_first_upgrade(node):
    site = make_site(node)
    assert isinstance(site.events, LazyEventsResource) and site.events.real is None
    for path in ("/", "/v1/rev", "/metrics"):
        conv = Conversation(site)
        conv.send("GET", path)
        assert status_of(conv) == 200, path
    assert site.events.real is None
    node.set("/ctl/name", -1, b"c")
    ws = WebSocketConversation(site, "/$events/ctl", via_site=True)
    assert ws.status == 101
    built = site.events.real
    assert built is not None and built.isLeaf
    snapshot = ws.messages()[0]
    assert snapshot["type"] == "snapshot" and snapshot["path"] == "/ctl"
    assert [f["path"] for f in snapshot["files"]] == ["/ctl/name"]
    node.set("/ctl/other", -1, b"d")
    assert [m["path"] for m in ws.messages() if m["type"] == "event"] == ["/ctl/other"]
    again = WebSocketConversation(site, via_site=True)
    assert again.status == 101 and site.events.real is built  # built once
    assert site.api.connections == 2


def test_a_refused_host_does_not_load_the_websocket(node):
    site = make_site(node)
    ws = WebSocketConversation(site, host="evil.example:8000", via_site=True)
    assert ws.status == 421 and ws.events is None
    assert site.events.real is None
    assert node.store.watch_count == 0


def test_the_events_factory_is_built_on_access(node):
    site = make_site(node)
    factory = site.events_factory
    assert factory is site.events.real._factory and site.events_factory is factory
    assert factory.web is site.api
    ws = WebSocketConversation(site)  # through the factory, as the tests of events do
    assert ws.status == 101
    assert ws.messages()[0]["type"] == "snapshot"


def test_a_site_without_events_has_no_factory(node):
    site = make_site(node)
    bare = WebSite(site.resource, site.options, site.limits, site.reactor)
    assert bare.events is None and bare.events_factory is None


def test_the_lazy_resource_is_a_leaf_that_ignores_children(node):
    site = make_site(node)
    site.events.putChild(b"x", object())
    assert site.events.isLeaf and site.events.real is None


NO_AUTOBAHN_AT_START = """
import sys
from twisted.internet.testing import MemoryReactorClock
from doozertw import tap
options = tap.Options()
options.parseOptions(["--in-memory", "--listen", "tcp:0", "--web", "tcp:0"])
reactor = MemoryReactorClock()
node, top = tap.build(options.cluster, options.node, reactor)
top.startService()
assert any(getattr(s, "factory", None).__class__.__name__ == "WebSite" for s in top)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("autobahn", "txaio")))
"""


@pytest.mark.e2e
def test_a_started_node_imports_no_autobahn():
    """In a fresh interpreter: other tests of this process import Autobahn."""
    out = subprocess.run([sys.executable, "-c", NO_AUTOBAHN_AT_START],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
