"""The HTTP JSON API under /v1/.

- ``GET /v1/keys/<path>[?rev=N]``: the file (at revision N if given).
  JSON ``{"path", "rev", "value", "encoding"}``; raw bytes with
  ``Accept: application/octet-stream`` (revision in ``X-Doozer-Rev``).
  A missing file is 404 NOENT.
- ``PUT /v1/keys/<path>[?rev=N]``: write. The body is the raw value, or
  with ``Content-Type: application/json`` an object ``{"value", "encoding"}``.
  ``rev``: -1 (default) clobber, 0 create, n compare-and-set.
  ``lease``: attach the file to that lease (0, the default: to none; a
  write without one detaches it). Answers ``{"path", "rev"}``.
- ``DELETE /v1/keys/<path>[?rev=N]``: delete, same ``rev`` rules.
- ``GET /v1/rev``: ``{"rev"}``.
- ``GET /v1/walk?glob=G[&rev=N]``: ``{"rev", "files": [...]}``.
- ``GET /v1/watch?glob=G[&rev=N]``: NDJSON stream, one event per line,
  from revision N (default: the next one) until the client disconnects.
- ``GET /v1/cluster``: the cluster view.
- ``GET /v1/snapshot``: a backup file of the store (frontends/web/backup.py).
- ``/v1/leases...``: leases (frontends/web/leases.py).
- ``POST /v1/txn``: a transaction (frontends/web/txn.py).
"""

import json
import secrets as secrets_module
from urllib.parse import unquote

from twisted.logger import Logger
from twisted.web import resource, server

from doozertw.errors import DoozerError, ErrCode
from doozertw.frontends.web import common
from doozertw.frontends.web.backup import SnapshotResource
from doozertw.frontends.web.leases import MAX_LEASE_ID, LeasesResource
from doozertw.frontends.web.stream import OutputQueue
from doozertw.frontends.web.txn import TxnResource
from doozertw.frontends.interface import ANY, CLOBBER, check_path

NDJSON_TYPE = b"application/x-ndjson"


class Api:
    """What every web resource needs: the node, secrets, limits, status, a clock.

    ``connections`` counts open websocket and streamed-watch connections.
    ``epoch`` names this run of the web port, so that event-stream clients
    resume by revision only against the store they saw.
    """

    def __init__(self, node, secrets, limits, status, reactor, observe_write=None,
                 status_interval=1.0):
        self.node = node
        self.epoch = secrets_module.token_hex(8)
        self.status_interval = status_interval
        self.connections = 0
        self.secrets = secrets
        self.limits = limits
        self.status = status
        self.reactor = reactor
        self.observe_write = observe_write

    def access(self, request):
        return common.access_for(request, self.secrets)

    def timed_write(self, deferred_factory):
        """Run a write and report its latency to ``observe_write`` (nothing
        unless set: the node itself reports proposal latency when it can)."""
        if self.observe_write is None:
            return deferred_factory()
        started = self.reactor.seconds()

        def done(result):
            self.observe_write(self.reactor.seconds() - started)
            return result

        return deferred_factory().addBoth(done)

    def glob(self, pattern):
        """``pattern`` compiled; DoozerError(BAD_PATH) if invalid or too long."""
        if len(pattern) > self.limits.max_path:
            raise DoozerError(ErrCode.BAD_PATH, "glob too long")
        return self.node.glob(pattern)

    def files(self, glob, rev):
        """Deferred (rev, [Event]) of every file matching ``glob`` at ``rev``."""
        node = self.node
        node.record_read()
        at = node.applied_rev if rev is None else rev
        return node.when_applied(at).addCallback(lambda _: (at, node.files(glob, at)))


_Leaf = common.Leaf


class KeysResource(_Leaf):
    """/v1/keys/<path>: read, write and delete one file."""

    def _path(self, request):
        raw = "/".join(p.decode("utf-8", "replace") for p in request.postpath)
        path = "/" + unquote(raw).strip("/")
        return check_path(path, self.api.limits.max_path, self.api.limits.max_depth)

    def render_GET(self, request):
        return common.run_guarded(request, lambda: self._get(request))

    def render_PUT(self, request):
        return common.run_guarded(request, lambda: self._put(request))

    def render_DELETE(self, request):
        return common.run_guarded(request, lambda: self._delete(request))

    def _get(self, request):
        self.api.access(request).require_read()
        path = self._path(request)
        rev = common.parse_int(request, "rev")
        raw = common.wants_octets(request)

        def found(answer):
            value, file_rev = answer
            if file_rev == 0:
                raise DoozerError(ErrCode.NOENT, path)
            if raw:
                request.setHeader(b"content-type", common.OCTET_TYPE)
                request.setHeader(b"x-doozer-rev", str(file_rev).encode())
                request.setHeader(b"content-length", str(len(value)).encode())
                request.write(value)
                request.finish()
                return
            body = {"path": path, "rev": file_rev}
            body.update(common.encode_value(value))
            common.write_json(request, 200, body)

        return common.respond(request, self.api.node.get(path, rev), found)

    def _value(self, request):
        limit = self.api.limits.max_value
        if common.content_type(request) != "application/json":
            return common.read_body(request, limit)
        body = common.read_body(request, limit * 2 + 4096)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise DoozerError(ErrCode.MISSING_ARG, "body is not valid JSON") from None
        if not isinstance(doc, dict) or "value" not in doc:
            raise DoozerError(ErrCode.MISSING_ARG, 'JSON body needs a "value"')
        value = common.decode_value(doc["value"], doc.get("encoding"))
        if len(value) > limit:
            raise DoozerError(ErrCode.OTHER, common.VALUE_TOO_LARGE)
        return value

    def _put(self, request):
        common.require_same_origin(request)
        self.api.access(request).require_write()
        path = self._path(request)
        rev = common.parse_int(request, "rev", CLOBBER)
        lease = common.parse_int(request, "lease", 0)
        if not 0 <= lease <= MAX_LEASE_ID:
            raise DoozerError(ErrCode.MISSING_ARG, "lease must be a lease id (0: none)")
        value = self._value(request)
        if lease:
            d = self.api.timed_write(lambda: self.api.node.set(path, rev, value, lease=lease))
        else:
            d = self.api.timed_write(lambda: self.api.node.set(path, rev, value))
        return common.respond(
            request, d, lambda new_rev: common.write_json(
                request, 200, {"path": path, "rev": new_rev}))

    def _delete(self, request):
        common.require_same_origin(request)
        self.api.access(request).require_write()
        path = self._path(request)
        rev = common.parse_int(request, "rev", CLOBBER)
        d = self.api.timed_write(lambda: self.api.node.delete(path, rev))
        return common.respond(
            request, d, lambda del_rev: common.write_json(
                request, 200, {"path": path, "rev": del_rev}))


class RevResource(_Leaf):
    def render_GET(self, request):
        def go():
            self.api.access(request).require_read()
            return common.respond(request, self.api.node.rev(),
                                  lambda rev: common.write_json(request, 200, {"rev": rev}))
        return common.run_guarded(request, go)


class WalkResource(_Leaf):
    def render_GET(self, request):
        def go():
            self.api.access(request).require_read()
            glob = self.api.glob(common.parse_text(request, "glob", ANY.pattern))
            rev = common.parse_int(request, "rev")

            def listed(answer):
                at, events = answer
                files = [common.event_fields(e) for e in events]
                for f in files:
                    del f["kind"]
                common.write_json(request, 200, {"rev": at, "files": files})

            return common.respond(request, self.api.files(glob, rev), listed)
        return common.run_guarded(request, go)


class ClusterResource(_Leaf):
    def render_GET(self, request):
        def go():
            self.api.access(request).require_read()
            common.write_json(request, 200, self.api.status().to_json())
            return server.NOT_DONE_YET
        return common.run_guarded(request, go)


class WatchResource(_Leaf):
    """GET /v1/watch: NDJSON, one JSON object per line per change."""

    log = Logger()

    def render_GET(self, request):
        return common.run_guarded(request, lambda: self._start(request))

    def _start(self, request):
        self.api.access(request).require_read()
        glob = self.api.glob(common.parse_text(request, "glob", ANY.pattern))
        rev = common.parse_int(request, "rev", self.api.node.applied_rev + 1)
        WatchStream(self.api, request, glob, rev).start()
        return server.NOT_DONE_YET


class WatchStream:
    """One streamed watch: delivers events to a request until either side stops."""

    log = Logger()

    def __init__(self, api, request, glob, rev):
        self.api = api
        self.request = request
        self.glob = glob
        self.rev = rev
        self.watch = None
        self.queue = OutputQueue(request.write, api.limits.max_output_buffer,
                                 self._overflowed, self._stop)

    def start(self):
        # Registering the watch first makes TOO_LATE an ordinary JSON error.
        buffered = []
        self.watch = self.api.node.watch(self.glob.pattern, self.rev, buffered.append)
        self.watch.callback = self._deliver
        self.request.setResponseCode(200)
        self.request.setHeader(b"content-type", NDJSON_TYPE)
        self.request.setHeader(b"cache-control", b"no-store")
        self.request.registerProducer(self.queue, True)
        self.request.notifyFinish().addBoth(self._finished)
        self.api.connections += 1
        self.request.write(b"")
        for event in buffered:
            self._deliver(event)

    def _deliver(self, event):
        """The watch callback: never raises (a failure ends this stream only)."""
        try:
            line = json.dumps(common.event_fields(event), separators=(",", ":"))
            self.queue.send(line.encode("utf-8") + b"\n")
        except Exception:
            self.log.failure("streamed watch delivery failed; ending it")
            self._cancel()
            self.queue.close()
            try:
                self.request.unregisterProducer()
                self.request.finish()
            except Exception:
                self.log.failure("could not end a failed streamed watch")

    def _overflowed(self):
        self._cancel()
        error = DoozerError(ErrCode.OTHER, "watcher too slow; output buffer full")
        line = json.dumps(common.error_body(error)).encode("utf-8") + b"\n"
        self.request.unregisterProducer()
        self.request.write(line)
        self.request.finish()

    def _stop(self):
        self._cancel()

    def _finished(self, _):
        self.api.connections -= 1
        self._cancel()
        self.queue.close()

    def _cancel(self):
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None


def v1_resource(api):
    """The /v1 tree."""
    root = resource.Resource()
    root.putChild(b"keys", KeysResource(api))
    root.putChild(b"rev", RevResource(api))
    root.putChild(b"walk", WalkResource(api))
    root.putChild(b"watch", WatchResource(api))
    root.putChild(b"cluster", ClusterResource(api))
    root.putChild(b"snapshot", SnapshotResource(api))
    root.putChild(b"leases", LeasesResource(api))
    root.putChild(b"txn", TxnResource(api))
    return root
