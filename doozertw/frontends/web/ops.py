"""Operations endpoints: /health, /livez, /readyz and /metrics.

- ``/livez``: 200 ``ok`` while the process serves HTTP.
- ``/readyz``: 200 ``ok`` when this node can serve linearizable requests
  (its cluster view knows a leader and has a quorum), else 503 ``not ready``.
- ``/health``: JSON summary; HTTP 200 when ready, 503 when not.
- ``/metrics``: Prometheus text format from a per-node CollectorRegistry
  (doozertw.frontends.web.metrics: the catalogue and its conventions);
  the proposal latency histogram counts every write the node proposes
  (``Node.proposal_observers``), whichever port it came from.

``/metrics`` and ``/health`` are open by default (as Prometheus expects);
with ``protect_metrics`` they need the read secret like /v1 reads
(``Authorization: Bearer <secret>`` or ``X-Doozer-Secret``), else 403.
``/livez`` and ``/readyz`` stay open (they tell only ``ok``/``not ready``).
"""

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web import resource, server

from doozertw import __version__
from doozertw.frontends.web import common
from doozertw.frontends.web.metrics import Metrics, NodeCollector  # noqa: F401 (re-exported)


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
