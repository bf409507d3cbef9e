"""/metrics follows Prometheus conventions, exports exactly its catalogue,
and contrib/grafana/doozertw.json uses only what it exports.

Conventions checked on real scrapes (a node alone; a durable member of an
in-memory cluster with peer links, after snapshots and fsyncs): the
``doozer_`` prefix, ``_total`` on every counter and only there, ``_seconds``
on every histogram (all of them durations), a ``node`` label on every
sample, each family's labels as the catalogue declares them.
"""

import json
import pathlib
import re
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import task

from doozertw.cluster.driver import Timing
from doozertw.cluster.memnet import MemoryNetwork
from doozertw.frontends.interface import NodeMetrics
from doozertw.frontends.web.metrics import BY_NAME, CATALOGUE, COUNTER, HISTOGRAM
from doozertw.node import Node
from doozertw.peer.transport import PeerStats
from doozertw.persist.fs import LazyFileSystem
from doozertw.persist.timedfs import TimedFileSystem
from doozertw.status import Durations
from doozertw.testing.web import Client, make_site

ROOT = pathlib.Path(__file__).parent.parent
DASHBOARD = ROOT / "contrib" / "grafana" / "doozertw.json"
VOTERS = ("n1", "n2", "n3")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum", "_created")
# doozer_leases needs NodeMetrics.leases (the node API's own count)
HAS_LEASES = "leases" in {f.name for f in NodeMetrics.__attrs_attrs__}


def scrape(site):
    code, _, body = Client(site).call("GET", "/metrics")
    assert code == 200
    return list(text_string_to_metric_families(body.decode("utf-8")))


def run_until(net, predicate, seconds=5.0):
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        net.run(0.01)
    assert predicate(), "condition not reached in time"


def peer_stats(name, state):
    return PeerStats(name=name, endpoint=f"mem:{name}", state=state, queued_messages=2,
                     queued_bytes=10, sent_messages=5, sent_bytes=500, dropped=1,
                     received_messages=4, received_bytes=400, connects=1, failures=3,
                     rtt=0.002, inbound=False)


@pytest.fixture(scope="module")
def cluster_scrape():
    """Families scraped from a durable member that has taken snapshots."""
    net = MemoryNetwork(task.Clock())
    links = {"n1": lambda: {"n2": peer_stats("n2", "up"), "n3": peer_stats("n3", "down")}}
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i, durable=True, timing=Timing(compact_every=5),
                peer_stats=links.get(name))
    run_until(net, lambda: net.leader() is not None)
    member = net.members["n1"]
    for i in range(12):
        member.node.set(f"/k/{i}", -1, b"v")
        net.run(0.05)
    run_until(net, lambda: member.store.rev >= 12)
    return member, scrape(make_site(member.node))


def check_conventions(families, node_name):
    for family in families:
        if family.name.endswith("_created") and family.name[:-8] in BY_NAME:
            continue  # the client library's creation time of a histogram
        spec = BY_NAME.get(family.name if family.type != "counter"
                           else family.name + "_total")
        assert family.name.startswith("doozer_"), family.name
        assert spec is not None, f"{family.name} is not in the catalogue"
        assert family.type == spec.type, (family.name, family.type)
        if family.type == HISTOGRAM:
            assert family.name.endswith("_seconds"), family.name
        if "seconds" in family.name:
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            if family.type == COUNTER:
                assert sample.name.endswith("_total") or sample.name.endswith("_created")
            elif family.type == HISTOGRAM:
                assert sample.name[len(family.name):] in HISTOGRAM_SUFFIXES, sample.name
            else:
                assert sample.name == family.name and not sample.name.endswith("_total")
            assert sample.labels.get("node") == node_name, sample
            extra = set(sample.labels) - {"node", "le"}
            assert extra == set(spec.labels), (sample.name, sample.labels)


def values(families):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


# -- the catalogue --------------------------------------------------------------


def test_catalogue_itself_follows_the_conventions():
    names = [f.name for f in CATALOGUE]
    assert len(names) == len(set(names))
    for spec in CATALOGUE:
        assert re.fullmatch(r"doozer_[a-z0-9_]+", spec.name), spec.name
        assert spec.name.endswith("_total") == (spec.type == COUNTER), spec.name
        if spec.type == HISTOGRAM:
            assert spec.name.endswith("_seconds"), spec.name
        assert "node" not in spec.labels and spec.help


def test_a_node_alone_follows_the_conventions():
    node = Node(name="solo")
    site = make_site(node)
    node.set("/x", -1, b"1")
    families = scrape(site)
    check_conventions(families, "solo")
    got = values(families)
    assert got[("doozer_role", (("node", "solo"), ("role", "leader")))] == 1
    assert got[("doozer_role", (("node", "solo"), ("role", "follower")))] == 0
    assert got[("doozer_proposal_latency_seconds_count", (("node", "solo"),))] == 1


def test_a_cluster_member_follows_the_conventions(cluster_scrape):
    member, families = cluster_scrape
    check_conventions(families, member.name)


def test_a_cluster_member_exports_the_whole_catalogue(cluster_scrape):
    _, families = cluster_scrape
    exported = {f.name + ("_total" if f.type == COUNTER else "") for f in families
                if not f.name.endswith("_created")}
    expected = {f.name for f in CATALOGUE}
    if not HAS_LEASES:
        expected.discard("doozer_leases")
    assert expected - exported == set()


def test_the_figures_are_the_members(cluster_scrape):
    member, families = cluster_scrape
    got = values(families)
    me = (("node", member.name),)
    st = member.driver.raft.status()
    assert got[("doozer_raft_last_index", me)] >= got[("doozer_raft_commit_index", me)] > 0
    assert got[("doozer_raft_applied_index", me)] <= got[("doozer_raft_commit_index", me)]
    assert got[("doozer_term", me)] == st.term
    role = "leader" if member.driver.is_leader else "follower"
    assert got[("doozer_role", me + (("role", role),))] == 1
    assert sum(got[("doozer_role", me + (("role", r),))]
               for r in ("leader", "follower", "candidate", "learner")) == 1
    # snapshots every 5 entries, each timed; fsyncs timed by the provider
    snaps = got[("doozer_snapshot_duration_seconds_count", me)]
    assert snaps >= 2
    assert got[("doozer_snapshot_duration_seconds_bucket", (("le", "+Inf"),) + me)] == snaps
    fsyncs = got[("doozer_wal_fsync_duration_seconds_count", me)]
    assert fsyncs > 0 and fsyncs == got[("doozer_wal_fsyncs_total", me)]
    # peer links, by peer
    up, down = me + (("peer", "n2"),), me + (("peer", "n3"),)
    assert got[("doozer_peer_up", up)] == 1 and got[("doozer_peer_up", down)] == 0
    assert got[("doozer_peer_sent_messages_total", up)] == 5
    assert got[("doozer_peer_received_messages_total", up)] == 4
    assert got[("doozer_peer_dropped_messages_total", up)] == 1
    assert got[("doozer_peer_connect_failures_total", up)] == 3


# -- the duration histograms and the timed file system --------------------------------


def test_durations_are_cumulative_and_clamp_negative_times():
    d = Durations(buckets=(0.01, 0.1))
    for seconds in (0.005, 0.01, 0.05, 3.0, -1.0):
        d.observe(seconds)
    h = d.snapshot()
    assert h.buckets == ((0.01, 3), (0.1, 4), (float("inf"), 5))
    assert h.count == 5 and h.sum == pytest.approx(3.065)


def test_durations_from_many_threads_lose_nothing():
    d = Durations()
    threads = [threading.Thread(target=lambda: [d.observe(0.001) for _ in range(2000)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.snapshot().count == 8000


def test_timed_file_system_reports_each_fsync_on_the_callers_clock():
    now = [100.0]

    def clock():
        now[0] += 0.25  # every reading: a quarter second later
        return now[0]

    seen = []
    fs = TimedFileSystem(LazyFileSystem(), clock, seen.append)
    fs.makedirs("/d")
    handle = fs.open_append("/d/f")
    handle.write(b"x")
    handle.fsync()
    fs.fsync_dir("/d")
    assert seen == [0.25, 0.25]
    assert fs.read_file("/d/f") == b"x"


def test_a_failed_fsync_reports_nothing_and_still_raises():
    inner = LazyFileSystem()
    seen = []
    fs = TimedFileSystem(inner, lambda: 0.0, seen.append)
    fs.makedirs("/d")
    handle = fs.open_append("/d/f")
    handle.write(b"x")
    inner.fail_next_fsync_with_eio()
    with pytest.raises(OSError):
        handle.fsync()
    assert seen == []


# -- the Grafana dashboard ------------------------------------------------------------


def dashboard_exprs():
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = []
    for panel in board["panels"]:
        for target in panel.get("targets", ()):
            exprs.append((panel["title"], target["expr"]))
    return board, exprs


def metric_of(name):
    """The catalogue name a series name refers to (histogram suffixes off)."""
    if name in BY_NAME:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[:-len(suffix)] if name.endswith(suffix) else None
        if base in BY_NAME and BY_NAME[base].type == HISTOGRAM:
            return base
    return None


def test_dashboard_uses_only_exported_metrics():
    _, exprs = dashboard_exprs()
    assert exprs
    used = set()
    for title, expr in exprs:
        names = re.findall(r"\bdoozer_[a-z0-9_]+", expr)
        assert names, (title, expr)
        for name in names:
            assert metric_of(name) is not None, f"{title}: {name} is not exported"
            used.add(metric_of(name))
    if not HAS_LEASES:
        used.discard("doozer_leases")
    must = {"doozer_writes_total", "doozer_proposal_latency_seconds", "doozer_reads_total",
            "doozer_is_leader", "doozer_term", "doozer_leader_changes_total",
            "doozer_raft_commit_index", "doozer_raft_applied_index",
            "doozer_wal_fsync_duration_seconds", "doozer_snapshot_duration_seconds",
            "doozer_connections", "doozer_watchers", "doozer_peer_up"}
    assert must <= used


def test_dashboard_panels_cover_what_operators_need():
    board, _ = dashboard_exprs()
    titles = " | ".join(p["title"].lower() for p in board["panels"])
    for topic in ("write rate", "write latency", "read rate", "leader", "term",
                  "commit", "fsync", "snapshot", "connections", "watches", "leases",
                  "peer"):
        assert topic in titles, topic
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_operations_md_tables_exactly_the_catalogue():
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("### Metrics", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `doozer_")]
    documented = {name for row in rows
                  for name in re.findall(r"`(doozer_[a-z0-9_]+)`", row.split("|")[1])}
    assert documented == {f.name for f in CATALOGUE}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for name in re.findall(r"`(doozer_[a-z0-9_]+)`", cells[0]):
            assert cells[1] == BY_NAME[name].type, row
            assert cells[2].strip("`") == ",".join(BY_NAME[name].labels), row
