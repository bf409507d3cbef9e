"""``GET /v1/snapshot``: an online backup of this node's store.

The body is a backup file (doozertw.persist.backup), ``Content-Type:
application/octet-stream``, built synchronously on the reactor thread by
``node.backup()``, so it holds the store at exactly one revision, given in
``X-Doozer-Revision``. It is this node's applied state (a follower may be
a few writes behind the leader; the header says where it is). The bytes
are written by a push producer in 64 KiB chunks as the connection takes
them, so a slow client never makes the transport hold a second copy of
the whole file. Reading it needs the read secret, like
every other /v1 read.
"""

from twisted.internet.interfaces import IPushProducer
from twisted.web import resource, server
from zope.interface import implementer

from doozertw.frontends.web import common


class SnapshotResource(resource.Resource):
    isLeaf = True

    def __init__(self, api):
        super().__init__()
        self.api = api

    def render_GET(self, request):
        return common.run_guarded(request, lambda: self._send(request))

    def _send(self, request):
        self.api.access(request).require_read()
        node = self.api.node
        rev = node.applied_rev
        data = node.backup()
        request.setResponseCode(200)
        request.setHeader(b"content-type", common.OCTET_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-length", str(len(data)).encode("ascii"))
        request.setHeader(b"x-doozer-revision", str(rev).encode("ascii"))
        request.setHeader(b"content-disposition",
                          f'attachment; filename="doozer-{rev}.backup"'.encode("ascii"))
        if request.method == b"HEAD":
            return b""
        _BytesProducer(request, data).start()
        return server.NOT_DONE_YET


@implementer(IPushProducer)
class _BytesProducer:
    """Writes ``data`` to ``request`` in chunks while the transport wants
    more (a push producer: paused when its buffer is full), then finishes."""

    chunk = 1 << 16

    def __init__(self, request, data):
        self.request = request
        self.data = memoryview(data)
        self.pos = 0
        self.paused = False
        self.stopped = False

    def start(self):
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self._pump()

    def _pump(self):
        while not self.paused and not self.stopped and self.pos < len(self.data):
            end = self.pos + self.chunk
            self.request.write(bytes(self.data[self.pos:end]))
            self.pos = end
        if not self.stopped and self.pos >= len(self.data):
            self.stopped = True
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        if self.paused:
            self.paused = False
            self._pump()

    def stopProducing(self):
        self.stopped = True
