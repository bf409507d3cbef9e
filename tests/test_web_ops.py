"""Health, readiness, Prometheus metrics and the static web view files."""

import re

from prometheus_client.parser import text_string_to_metric_families

from doozertw.frontends.web import ClusterView, MemberStatus
from doozertw.frontends.web.static import web_directory
from doozertw.testing.web import Client, make_site
from doozertw.node import Node


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_health_livez_readyz_for_a_single_node(node):
    client = Client(make_site(node))
    node.set("/x", -1, b"1")
    code, body = client.json("GET", "/health")
    assert code == 200
    assert body["status"] == "ok" and body["role"] == "leader" and body["rev"] == 1
    assert body["files"] == 1 and body["node"] == node.name and body["term"] == 0
    assert client.call("GET", "/livez")[::2] == (200, b"ok\n")
    assert client.call("GET", "/readyz")[::2] == (200, b"ok\n")


def no_quorum_view(node):
    def status():
        me = MemberStatus(name=node.name, role="follower", term=7, applied=node.store.rev,
                          healthy=True)
        peer = MemberStatus(name="n2", role="leader", term=6, applied=0, healthy=False)
        return ClusterView(name="c", self_name=node.name, leader="", term=7,
                           has_quorum=False, members=(me, peer), leader_changes=3,
                           peer_rtt=(("n2", 0.25),))
    return status


def test_not_ready_without_quorum(node):
    client = Client(make_site(node, status=no_quorum_view(node)))
    code, body = client.json("GET", "/health")
    assert code == 503 and body["status"] == "unavailable" and body["role"] == "follower"
    assert client.call("GET", "/readyz")[0] == 503
    assert client.call("GET", "/livez")[0] == 200
    code, body = client.json("GET", "/v1/cluster")
    assert body["term"] == 7 and [n["name"] for n in body["nodes"]] == [node.name, "n2"]
    assert body["nodes"][1]["healthy"] is False and body["peer_rtt"] == {"n2": 0.25}


def test_node_may_provide_its_own_status():
    node = Node(name="n9")
    node.cluster_status = no_quorum_view(node)
    code, body = Client(make_site(node)).json("GET", "/v1/cluster")
    assert body["leader_changes"] == 3


def test_metrics_parse_and_reflect_the_node(node):
    site = make_site(node, status=no_quorum_view(node))
    client = Client(site)
    client.call("PUT", "/v1/keys/a", b"1")
    client.call("PUT", "/v1/keys/b", b"2")
    client.call("GET", "/v1/keys/a")
    code, headers, body = client.call("GET", "/metrics")
    assert code == 200
    assert headers.getRawHeaders("content-type")[0].startswith("text/plain")
    got = samples(body.decode("utf-8"))
    me = (("node", node.name),)
    assert got[("doozer_revision", me)] == 2
    assert got[("doozer_files", me)] == 2
    assert got[("doozer_writes_total", me)] == 2
    assert got[("doozer_reads_total", me)] >= 1
    assert got[("doozer_term", me)] == 7
    assert got[("doozer_has_quorum", me)] == 0
    assert got[("doozer_leader_changes_total", me)] == 3
    assert got[("doozer_peer_rtt_seconds", (("node", node.name), ("peer", "n2")))] == 0.25
    assert got[("doozer_proposal_latency_seconds_count", me)] == 2
    for name in ("doozer_watchers", "doozer_connections", "doozer_web_connections"):
        assert (name, me) in got


def test_each_site_has_its_own_registry():
    a, b = Node(name="a"), Node(name="b")
    site_a, site_b = make_site(a), make_site(b)
    a.set("/x", -1, b"1")
    text_b = Client(site_b).call("GET", "/metrics")[2].decode()
    assert 'doozer_revision{node="b"} 0.0' in text_b
    assert 'node="a"' not in text_b
    assert site_a.metrics.registry is not site_b.metrics.registry


def test_web_view_is_served_and_self_contained(node):
    client = Client(make_site(node))
    code, headers, body = client.call("GET", "/")
    assert code == 200 and b"<title>doozer</title>" in body
    for name in ("app.js", "app.css", "favicon.svg"):
        assert client.call("GET", "/" + name)[0] == 200
    # no CDN: nothing the page loads comes from another host
    for path in (web_directory() / "index.html", web_directory() / "app.js",
                 web_directory() / "app.css"):
        text = path.read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
        assert "@import" not in text


def test_static_directory_is_not_listed(node):
    assert Client(make_site(node)).call("GET", "/nope/")[0] in (403, 404)
