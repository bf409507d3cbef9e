"""The web port: one twisted.web Site for the view, the API, mostdb and operations.

    /                 the web view (static files from web/)
    /$events/<path>   websocket events (doozertw.frontends.web.events; loaded, with
                      Autobahn, on first use: doozertw.frontends.web.lazy_events)
    /v1/...           HTTP JSON API (doozertw.frontends.web.api)
    /leases           the leases and their files, as HTML (doozertw.frontends.web.leases)
    /mostdb/...       mostdb compatibility (doozertw.frontends.web.mostdb)
    /health /livez /readyz /metrics   operations (doozertw.frontends.web.ops)

Every request passes the Host allowlist first (doozertw.frontends.web.hosts);
connections are capped and requests given deadlines and a body cap
(doozertw.frontends.web.conn), all set by a WebOptions
(doozertw.frontends.web.options). No access log line is written per
request unless ``WebOptions.access_log`` is set.
"""

from twisted.web import server

from doozertw.frontends.access import Secrets
from doozertw.frontends.web import api as api_module
from doozertw.frontends.web.conn import (
    ConnectionGate, GuardedChannel, GuardedRequest, max_body)
from doozertw.frontends.web.hosts import HostPolicy, HostRefused
from doozertw.frontends.web.lazy_events import LazyEventsResource
from doozertw.frontends.web.leases import LeasesPage
from doozertw.frontends.web.mostdb import mostdb_resource
from doozertw.frontends.web.ops import (
    HealthResource, LivezResource, Metrics, MetricsResource, ReadyzResource)
from doozertw.frontends.web.options import WebOptions
from doozertw.frontends.web.static import static_resource
from doozertw.frontends.web.status import status_source
from doozertw.limits import Limits


class WebSite(server.Site):
    """The Site, with the objects tests and the node may want to reach.

    ``gate`` counts open connections; ``hosts`` is the Host allowlist.
    ``events`` is the LazyEventsResource at ``$events`` (None: not mounted).
    Plain HTTP/1.x only (GuardedChannel; no HTTP/2 negotiation).
    """

    # Twisted types Site.protocol as a factory of its private
    # _GenericHTTPChannelProtocol wrapper; an HTTPChannel subclass is what it calls.
    protocol = GuardedChannel  # type: ignore[assignment]
    requestFactory = GuardedRequest
    api = None
    metrics = None
    events = None

    def __init__(self, root, options, limits, reactor):
        super().__init__(root, timeout=options.idle_timeout, reactor=reactor)
        self.options = options
        self.limits = limits
        self.hosts = HostPolicy(options.hosts)
        self.gate = ConnectionGate(options.max_connections, options.max_connections_per_source)

    @property
    def events_factory(self):
        """The websocket EventsFactory behind ``$events`` (None without one); the
        first access imports Autobahn and builds it, as the first upgrade does."""
        return self.events.factory if self.events is not None else None

    def buildProtocol(self, addr):
        return self.gate.wrap(addr, lambda: self._channel(addr))

    def _channel(self, addr):
        channel = super().buildProtocol(addr)
        channel.header_timeout = self.options.header_timeout
        channel.body_timeout = self.limits.request_send_timeout
        channel.max_body = max_body(self.limits)
        channel.seconds = self.reactor.seconds
        return channel

    def log(self, request):
        """The access log line of ``request``: only with ``WebOptions.access_log``."""
        if self.options.access_log:
            super().log(request)

    def getResourceFor(self, request):
        if not self._host_allowed(request):
            return HostRefused()
        return super().getResourceFor(request)

    def _host_allowed(self, request):
        """The Host check; a connection remembers the last Host it allowed
        (its local address cannot change), so a keep-alive client sending
        the same Host again costs one comparison."""
        host = request.getHeader(b"host")
        channel = request.channel
        if host is not None and host == getattr(channel, "allowed_host", None):
            return True
        if not self.hosts.allows_request(request):
            return False
        channel.allowed_host = host
        return True


def make_web_site(node, secrets=None, limits=None, reactor=None, status=None,
                  static_dir=None, status_interval=1.0, options=None):
    """Build the web port's Site for ``node``.

    ``secrets``: doozertw.frontends.access.Secrets (None: open).
    ``limits``: doozertw.limits.Limits (None: the node's).
    ``status``: a zero-argument callable returning a ClusterView
    (None: ``status_source(node)``).
    ``options``: doozertw.frontends.web.options.WebOptions (None: defaults).

    The proposal latency histogram is fed by ``node.proposal_observers``
    (every write the node proposes, from any port); only for a node without
    them does it time the web port's own writes.
    """
    if reactor is None:
        from twisted.internet import reactor
    secrets = secrets if secrets is not None else Secrets()
    options = options if options is not None else WebOptions()
    limits = limits if limits is not None else getattr(node, "limits", Limits())
    api = api_module.Api(node, secrets, limits, status or status_source(node), reactor,
                         status_interval=status_interval)
    metrics = Metrics(api)
    observers = getattr(node, "proposal_observers", None)
    if observers is not None:
        observers.append(metrics.observe_proposal)  # every write, whatever its port
    else:
        api.observe_write = metrics.observe_proposal  # a node that reports nothing

    root = static_resource(static_dir)
    events = LazyEventsResource(api, reactor, HostPolicy(options.hosts))
    root.putChild(b"$events", events)
    root.putChild(b"v1", api_module.v1_resource(api))
    root.putChild(b"leases", LeasesPage(api))
    root.putChild(b"mostdb", mostdb_resource(api))
    root.putChild(b"health", HealthResource(api, protect=options.protect_metrics))
    root.putChild(b"livez", LivezResource())
    root.putChild(b"readyz", ReadyzResource(api))
    root.putChild(b"metrics", MetricsResource(metrics, api if options.protect_metrics else None))

    site = WebSite(root, options, limits, reactor)
    site.displayTracebacks = False
    site.api = api
    site.metrics = metrics
    site.events = events
    return site
