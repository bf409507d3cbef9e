"""The web view's event stream: an Autobahn websocket at ``/$events/<path>``.

Every message is a JSON text frame with a ``type``:

- ``snapshot`` ``{"rev", "path", "files": [{"path","rev","value","encoding"}],
  "more"}``: the files of the subtree at ``<path>`` (the whole tree for
  ``/``) at revision ``rev``, in pages of about ``SNAPSHOT_PAGE`` bytes:
  while ``more`` is true, ``snapshot_page`` ``{"rev", "files", "more"}``
  messages follow with the rest. Pages are written only as fast as the
  client reads them. After the last page every change from ``rev + 1``
  follows, so nothing is missed (no ``event`` or ``status`` comes between
  the pages).
- ``event`` ``{"path","rev","kind": "set"|"del","value","encoding"}``.
- A file of a snapshot, and a ``set`` event, attached to a lease (an
  ephemeral file) also has ``"lease": ID``: the lease it is attached to
  when the message is built (``node.lease_of``); the view marks it.
- ``status`` ``{"time","rev","files","watchers","reads","writes","cluster"}``
  every ``status_interval`` seconds (counters are totals; the page
  differentiates them into rates).
- ``access`` ``{"ok", "can_read", "can_write"}``: the answer to an access message.
- ``error`` ``{"error","code","detail"}``: e.g. permission denied, TOO_LATE.

Every ``snapshot`` and ``resumed`` message carries ``epoch``, a token that
names this server's run of the store. Query ``?since=N&epoch=E`` resumes:
when E is this server's epoch, events from revision N are sent without a
snapshot (a ``resumed`` message ``{"rev": N, "epoch": E}`` comes first). If
the epoch differs (the node restarted, or this is another node), or N has left
the history window (or lies beyond this store's next revision, as after a
restart of an in-memory node), a fresh snapshot is sent instead.

Close codes: 4400 bad path; 4408 the client read too slowly (its output
buffer, or the changes held back while its snapshot streams, passed
``limits.max_output_buffer``); 4500 delivering to this client failed.
A failure to deliver to one client closes that client only: it never
raises into the store's apply path that notifies the watch.

Messages to the client may be as large as a value allows (a ``max_value``
value, JSON-escaped); messages from the client are at most
``MAX_CLIENT_MESSAGE`` bytes. An upgrade whose ``Host`` is not allowed
(doozertw.frontends.web.hosts) is refused with 421.

A browser connecting from a page of another origin is refused (403), so
no page elsewhere can read the store through a visitor's browser.

When secrets are configured the server sends a permission-denied error on
open and waits for ``{"type": "access", "secret": S}`` from the client;
streaming starts once the secret grants reading.
"""

import json
from urllib.parse import unquote

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import task
from twisted.logger import Logger

from doozertw.errors import PERMISSION_DENIED, DoozerError, ErrCode
from doozertw.frontends.access import Access
from doozertw.frontends.web import common
from doozertw.frontends.web.hosts import MISDIRECTED, HostPolicy
from doozertw.frontends.web.stream import OutputQueue
from doozertw.frontends.interface import SET, Glob, check_path

EVENTS_PREFIX = "/$events"
CLOSE_BAD_PATH = 4400
CLOSE_TOO_SLOW = 4408
CLOSE_INTERNAL = 4500  # autobahn lets an application send only 1000 or 3000-4999
MAX_CLIENT_MESSAGE = 64 * 1024
SNAPSHOT_PAGE = 64 * 1024


def subtree_globs(path):
    """Globs covering ``path`` and everything below it."""
    if path == "/":
        return [Glob("/**")]
    return [Glob(path), Glob(path + "/**")]


def subtree_path(request_path, max_path, max_depth=None):
    """The store path a websocket URL asks for (``/$events/a/b`` → ``/a/b``)."""
    rest = unquote(request_path)
    if rest.startswith(EVENTS_PREFIX):
        rest = rest[len(EVENTS_PREFIX):]
    rest = "/" + rest.strip("/")
    if max_depth is None:
        return check_path(rest, max_path)
    return check_path(rest, max_path, max_depth)


class EventsProtocol(WebSocketServerProtocol):
    """One browser's live view of a subtree."""

    log = Logger()
    web = None
    queue = None
    ticker = None
    watches = ()
    subtree = "/"

    snapshot = None
    pending = ()
    pending_bytes = 0

    def onConnect(self, request):
        self.web = self.factory.web
        if not self.factory.hosts.allows(request.headers.get("host"), self.transport.getHost(),
                                         self.factory.isSecure):
            raise ConnectionDeny(MISDIRECTED, "Host not allowed on this web port")
        if not common.same_origin(request.headers.get("origin"), request.headers.get("host")):
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "cross-origin websocket refused")
        self.path_error = None
        try:
            self.subtree = subtree_path(request.path, self.web.limits.max_path,
                                        self.web.limits.max_depth)
        except DoozerError as e:
            self.subtree, self.path_error = "/", e
        since = request.params.get("since", [None])[0]
        self.since = int(since) if since and since.lstrip("-").isdigit() else None
        if request.params.get("epoch", [None])[0] != self.web.epoch:
            self.since = None
        self.access = Access(self.web.secrets)
        self.watches = []
        self.streaming = False
        self.ticker = None
        self.queue = None
        return None

    def onOpen(self):
        try:
            self._open()
        except Exception:
            self.log.failure("websocket open failed for {path}", path=self.subtree)
            self.dropConnection(abort=True)

    def onMessageFrameBegin(self, length):
        super().onMessageFrameBegin(length)
        if not self.failedByMe and self.message_data_total_length > MAX_CLIENT_MESSAGE:
            self._max_message_size_exceeded(
                self.message_data_total_length, MAX_CLIENT_MESSAGE,
                f"message from the client larger than {MAX_CLIENT_MESSAGE} octets")

    def _open(self):
        self.web.connections += 1
        self.queue = OutputQueue(self._write, self.web.limits.max_output_buffer,
                                 self._overflowed, self._cancel_watches, self._pump)
        if getattr(self.transport, "producer", None) is not None:
            # twisted.web's HTTP channel handed this transport over to us.
            self.transport.unregisterProducer()
        self.transport.registerProducer(self.queue, True)
        if self.path_error is not None:
            self.send_json(dict(type="error", **common.error_body(self.path_error)))
            self.sendClose(code=CLOSE_BAD_PATH, reason="bad path")
            return
        if self.access.can_read:
            self.start()
        else:
            self._deny()

    def _deny(self):
        error = DoozerError(ErrCode.OTHER, PERMISSION_DENIED)
        self.send_json(dict(type="error", **common.error_body(error)))

    def onMessage(self, payload, isBinary):
        try:
            message = json.loads(payload.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            message = None
        if not isinstance(message, dict) or message.get("type") != "access":
            error = DoozerError(ErrCode.UNKNOWN_VERB, "expected an access message")
            self.send_json(dict(type="error", **common.error_body(error)))
            return
        granted = self.access.grant(str(message.get("secret", "")))
        self.send_json({"type": "access", "ok": granted, "can_read": self.access.can_read,
                        "can_write": self.access.can_write})
        if self.access.can_read and not self.streaming:
            self.start()

    def onClose(self, wasClean, code, reason):
        if self.queue is not None:
            self.web.connections -= 1
            self.queue.close()
        self._cancel_watches()
        self.snapshot, self.pending = None, ()
        if self.ticker is not None and self.ticker.running:
            self.ticker.stop()

    # -- streaming -----------------------------------------------------------

    def start(self):
        self.streaming = True
        if self.since is not None and self._resume(self.since):
            pass
        else:
            self._snapshot()
        self.ticker = task.LoopingCall(self.send_status)
        self.ticker.clock = self.web.reactor
        self.ticker.start(self.web.status_interval, now=True)

    def _resume(self, since):
        if since > self.web.node.applied_rev + 1:
            return False  # the client saw revisions this store never had
        try:
            self._watch(since, announce={"type": "resumed", "rev": since,
                                           "epoch": self.web.epoch})
        except DoozerError:
            self._cancel_watches()
            return False
        return True

    def _snapshot(self):
        """Stream the subtree at the current revision, then its changes.

        Changes from ``rev + 1`` are watched at once and held in
        ``pending`` until the last page is written (``_pump``)."""
        node = self.web.node
        rev = node.applied_rev
        files = []
        for glob in subtree_globs(self.subtree):
            files.extend(node.files(glob, rev))
        node.record_read()
        self.snapshot = _SnapshotPages(rev, self.web.epoch, self.subtree, files,
                                       node.lease_of)
        self.pending, self.pending_bytes = [], 0
        self._watch(rev + 1)
        self._pump()

    def _pump(self):
        """Write snapshot pages while the client keeps up; then the held-back changes."""
        try:
            while self.snapshot is not None and self.queue is not None and self.queue.idle:
                page = self.snapshot.next_page()
                self.send_json(page)
                if not page["more"]:
                    self.snapshot = None
                    pending, self.pending = self.pending, ()
                    for event in pending:
                        self._deliver(event)
        except Exception:
            self._fail("snapshot")

    def _watch(self, from_rev, announce=None):
        """Watch the subtree from ``from_rev``; replayed history arrives in rev order."""
        replay = []
        for glob in subtree_globs(self.subtree):
            self.watches.append(self.web.node.watch(glob.pattern, from_rev, replay.append))
        if announce is not None:
            self.send_json(announce)
        for event in sorted(replay, key=lambda e: e.rev):
            self._event(event)
        for watch in self.watches:
            watch.callback = self._event

    def _event(self, event):
        """The watch callback: never raises (a failure closes this client only)."""
        try:
            if self.snapshot is not None:
                self._hold(event)
            else:
                self._deliver(event)
        except Exception:
            self._fail("event")

    def _hold(self, event):
        self.pending.append(event)
        self.pending_bytes += len(event.value) + len(event.path)
        if self.pending_bytes > self.web.limits.max_output_buffer:
            self.snapshot, self.pending = None, ()
            self.queue.close()
            self._overflowed()

    def _deliver(self, event):
        fields = common.event_fields(event)
        if event.kind == SET:
            _add_lease(fields, self.web.node.lease_of)
        self.send_json(dict(type="event", **fields))

    def _fail(self, what):
        """Delivery to this client failed: log, stop its watches, close it with 4500."""
        self.log.failure("websocket {what} delivery failed for {path}; closing it",
                         what=what, path=self.subtree)
        self._cancel_watches()
        self.snapshot, self.pending = None, ()
        if self.ticker is not None and self.ticker.running:
            self.ticker.stop()
        if self.queue is not None:
            self.queue.close()
        try:
            self.sendClose(code=CLOSE_INTERNAL, reason="delivery failed")
        except Exception:
            try:
                self.dropConnection(abort=True)
            except Exception:
                self.log.failure("could not drop a failed websocket")

    def send_status(self):
        """The ticker's call: never raises (a failure closes this client only)."""
        if self.snapshot is not None:
            return  # no revision may be announced before the snapshot's changes
        try:
            self._send_status()
        except Exception:
            self._fail("status")

    def _send_status(self):
        figures = self.web.node.metrics()
        self.send_json({
            "type": "status",
            "time": self.web.reactor.seconds(),
            "rev": figures.rev,
            "files": figures.files,
            "watchers": figures.watchers,
            "reads": figures.reads,
            "writes": figures.writes,
            "cluster": self.web.status().to_json(),
        })

    def send_json(self, body):
        if self.queue is not None:
            self.queue.send(json.dumps(body, separators=(",", ":")).encode("utf-8"))

    def _write(self, data):
        if self.state == self.STATE_OPEN:
            self.sendMessage(data, isBinary=False)

    def _overflowed(self):
        self._cancel_watches()
        self.sendClose(code=CLOSE_TOO_SLOW, reason="output buffer full")

    def _cancel_watches(self):
        for watch in self.watches:
            watch.cancel()
        self.watches = []


class _SnapshotPages:
    """The pages of one snapshot: messages of about SNAPSHOT_PAGE bytes each
    (at least one file per page), built one at a time."""

    def __init__(self, rev, epoch, path, files, lease_of):
        self.rev, self.epoch, self.path = rev, epoch, path
        self._lease_of = lease_of
        self._files = files
        self._next = 0
        self._first = True

    def next_page(self):
        files, size = [], 0
        while self._next < len(self._files) and (not files or size < SNAPSHOT_PAGE):
            event = self._files[self._next]
            self._next += 1
            files.append(_add_lease(_file_fields(event), self._lease_of))
            size += len(event.value) + len(event.path) + 64
        more = self._next < len(self._files)
        if self._first:
            self._first = False
            return {"type": "snapshot", "rev": self.rev, "epoch": self.epoch,
                    "path": self.path, "files": files, "more": more}
        return {"type": "snapshot_page", "rev": self.rev, "files": files, "more": more}


def _file_fields(event):
    out = {"path": event.path, "rev": event.rev}
    out.update(common.encode_value(event.value))
    return out


def _add_lease(fields, lease_of):
    """``fields`` with ``"lease"`` added if its file is attached to one now."""
    lease = lease_of(fields["path"])
    if lease:
        fields["lease"] = lease
    return fields


class EventsFactory(WebSocketServerFactory):
    protocol = EventsProtocol

    def __init__(self, web, reactor, hosts=None):
        super().__init__(reactor=reactor)
        self.web = web
        self.hosts = hosts if hosts is not None else HostPolicy()
        # Autobahn applies maxMessagePayloadSize to what we send as well, and
        # a message carries a whole value: the limit on what the client sends
        # is enforced per message in EventsProtocol.onMessageFrameBegin.
        self.setProtocolOptions(maxMessagePayloadSize=0,
                                maxFramePayloadSize=MAX_CLIENT_MESSAGE)


def events_resource(web, reactor, hosts=None):
    """The twisted.web resource to mount at ``$events``; ``hosts`` a HostPolicy
    (checked again at the upgrade, for a factory used without the Site)."""
    return WebSocketResource(EventsFactory(web, reactor, hosts))
