"""Operations endpoints: /health, /livez, /readyz and /metrics.

- ``/livez``: 200 ``ok`` while the process serves HTTP.
- ``/readyz``: 200 ``ok`` when this node can serve linearizable requests
  (its cluster view knows a leader and has a quorum), else 503 ``not ready``.
- ``/health``: JSON summary; HTTP 200 when ready, 503 when not.
- ``/metrics``: Prometheus text format from a per-node CollectorRegistry;
  the proposal latency histogram counts every write the node proposes
  (``Node.proposal_observers``), whichever port it came from.

``/metrics`` and ``/health`` are open by default (as Prometheus expects);
with ``protect_metrics`` they need the read secret like /v1 reads
(``Authorization: Bearer <secret>`` or ``X-Doozer-Secret``), else 403.
``/livez`` and ``/readyz`` stay open (they tell only ``ok``/``not ready``).
"""

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web import resource, server

from doozertw import __version__
from doozertw.frontends.web import common

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0)


class NodeCollector:
    """Reads the node, its store and its cluster view at scrape time."""

    def __init__(self, api):
        self.api = api

    def describe(self):
        return []

    def collect(self):
        node, api = self.api.node, self.api
        view = api.status()
        labels = ["node"]
        me = [node.name]

        def gauge(name, doc, value):
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(me, value)
            return g

        def counter(name, doc, value):
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(me, value)
            return c

        figures = node.metrics()
        yield gauge("doozer_revision", "Current revision of the store.", figures.rev)
        yield gauge("doozer_files", "Files in the store.", figures.files)
        yield gauge("doozer_watchers", "Watches registered on the store.", figures.watchers)
        yield gauge("doozer_connections", "Open client-port connections.", figures.connections)
        yield gauge("doozer_web_connections", "Open websocket and streamed-watch connections.",
                    api.connections)
        yield counter("doozer_reads", "Read requests served.", figures.reads)
        yield counter("doozer_writes", "Write requests proposed.", figures.writes)
        yield counter("doozer_write_errors", "Writes that failed.", figures.write_errors)
        yield gauge("doozer_term", "Current consensus term.", view.term)
        yield gauge("doozer_is_leader", "1 if this node is the leader.",
                    1 if view.leader == node.name else 0)
        yield gauge("doozer_has_quorum", "1 if this node can commit writes.",
                    1 if view.has_quorum else 0)
        yield counter("doozer_leader_changes", "Leader changes seen by this node.",
                      view.leader_changes)
        if view.storage is not None:
            st = view.storage
            yield counter("doozer_wal_fsyncs", "fsyncs of the write-ahead log and snapshots.",
                          st.fsyncs)
            yield counter("doozer_wal_bytes_written", "Bytes written to the data directory.",
                          st.bytes_written)
            yield gauge("doozer_snapshot_index", "Raft index of the latest snapshot.",
                        st.snapshot_index)
            yield gauge("doozer_writes_refused", "1 while writes are refused (disk full "
                        "or failed).", 1 if st.writes_refused else 0)
        rtt = GaugeMetricFamily("doozer_peer_rtt_seconds",
                                "Last round-trip time to each peer.", labels=["node", "peer"])
        for peer, seconds in view.peer_rtt:
            rtt.add_metric([node.name, peer], seconds)
        yield rtt
        info = GaugeMetricFamily("doozer_build_info", "Version of this node.",
                                 labels=["node", "version"])
        info.add_metric([node.name, __version__], 1)
        yield info


class Metrics:
    """A node's metrics registry (never the global one)."""

    def __init__(self, api):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(api))
        self.proposal_latency = Histogram(
            "doozer_proposal_latency_seconds",
            "Seconds from proposing a write to its outcome.",
            registry=self.registry, buckets=LATENCY_BUCKETS)

    def observe_proposal(self, seconds):
        self.proposal_latency.observe(max(0.0, seconds))

    def render(self):
        return generate_latest(self.registry)


class MetricsResource(resource.Resource):
    """``/metrics``; with ``api`` given, only for a request that may read."""

    isLeaf = True

    def __init__(self, metrics, api=None):
        super().__init__()
        self.metrics = metrics
        self.api = api

    def render_GET(self, request):
        return common.run_guarded(request, lambda: self._render(request))

    def _render(self, request):
        if self.api is not None:
            self.api.access(request).require_read()
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self.metrics.render()


def health(api):
    """(ready, JSON body) for this node."""
    node = api.node
    figures = node.metrics()
    view = api.status()
    me = view.member(node.name)
    ready = view.has_quorum and bool(view.leader) and (me is None or me.healthy)
    body = {
        "status": "ok" if ready else "unavailable",
        "node": node.name,
        "cluster": view.name,
        "version": __version__,
        "role": me.role if me else "unknown",
        "leader": view.leader,
        "term": view.term,
        "rev": figures.rev,
        "files": figures.files,
        "watchers": figures.watchers,
        "has_quorum": view.has_quorum,
    }
    return ready, body


class HealthResource(resource.Resource):
    """``/health``; with ``protect``, only for a request that may read."""

    isLeaf = True

    def __init__(self, api, protect=False):
        super().__init__()
        self.api = api
        self.protect = protect

    def render_GET(self, request):
        return common.run_guarded(request, lambda: self._render(request))

    def _render(self, request):
        if self.protect:
            self.api.access(request).require_read()
        ready, body = health(self.api)
        common.write_json(request, 200 if ready else 503, body)
        return server.NOT_DONE_YET


class LivezResource(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"ok\n"


class ReadyzResource(resource.Resource):
    isLeaf = True

    def __init__(self, api):
        super().__init__()
        self.api = api

    def render_GET(self, request):
        ready, _ = health(self.api)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if ready:
            return b"ok\n"
        request.setResponseCode(503)
        return b"not ready\n"
