"""The ``$events`` resource, loading the websocket code on first use.

Importing Autobahn (doozertw.frontends.web.events) adds about 11 MiB to a
node's memory, and most nodes never serve a websocket: the web view is
opened now and then. LazyEventsResource stands where the real resource
would be mounted and imports doozertw.frontends.web.events, and builds the
real WebSocketResource, on the first request that reaches it (after the
Site's Host allowlist) or the first use of ``factory``; from then on it hands
every request to that resource unchanged (the upgrade's Host and Origin
checks, the connection caps and the events themselves all live there).

This module must not import Autobahn, nor anything that does.
"""

from zope.interface import implementer
from twisted.web.resource import IResource


@implementer(IResource)
class LazyEventsResource:
    """The twisted.web resource to mount at ``$events``.

    ``web``, ``reactor`` and ``hosts`` are what
    doozertw.frontends.web.events.events_resource takes. ``real`` is None
    until the first request (or ``factory``) builds the real resource.
    A leaf, as the real one: every path below ``$events`` renders it.
    """

    isLeaf = True

    def __init__(self, web, reactor, hosts=None):
        self._args = (web, reactor, hosts)
        self.real = None

    def resource(self):
        """The real WebSocketResource, built (and Autobahn imported) on the first call."""
        if self.real is None:
            from doozertw.frontends.web.events import events_resource
            self.real = events_resource(*self._args)
        return self.real

    @property
    def factory(self):
        """The real resource's EventsFactory (builds the resource if not yet built)."""
        return self.resource()._factory

    def render(self, request):
        return self.resource().render(request)

    def getChildWithDefault(self, name, request):
        return self.resource().getChildWithDefault(name, request)

    def putChild(self, path, child):
        """A leaf has no children: ignored, as the real resource does."""
