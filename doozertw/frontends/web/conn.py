"""Connection-level defences of the web port: deadlines, body size, connection caps.

What twisted.web enforces by itself (``HTTPChannel``): a request line or
header line of at most 16 KiB, 16 KiB of headers in all, 500 headers
(400 and close beyond), and ``HTTPFactory.timeOut``: an *idle* timeout that
every received byte resets and that is off while a request is handled. It
does not bound the time a request takes to arrive (a client trickling one
byte a second keeps a connection forever) nor the size of a body (it is
spooled to a temporary file). ``GuardedChannel`` adds:

- a header deadline: the request line and headers must arrive within
  ``WebOptions.header_timeout`` seconds of the request's first byte;
- a body deadline: the body within ``Limits.request_send_timeout`` seconds of
  the headers;
- a body cap (``max_body``): a larger ``Content-Length`` or chunked body is
  answered 413 and the connection closed.

A deadline's timer is armed only when a dataReceived leaves its request
incomplete (a request that arrives in one read costs no timer), for the
time left from when the deadline started. A deadline that passes is
answered ``408 Request Timeout`` and the connection closed (aborted
``abortTimeout`` seconds later if the client does not read).
``ConnectionGate`` caps open connections per node and per source address;
it counts at the transport, so a connection stays counted after a
websocket upgrade takes it over from twisted.web. One connection over a
cap is answered ``503`` and closed.

The per-request work twisted.web repeats for every request on a
keep-alive connection is trimmed: the connection's addresses and TLS-ness
are looked up once, the ``Date`` header formatted once a second.
"""

import time

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.python import failure
from twisted.web import http, resource, server
from twisted.web.http import unquote

from doozertw.nodelay import tune_tcp

BODY_SLACK = 8192


def max_body(limits):
    """Largest request body accepted: a JSON-encoded max_value plus room."""
    return 2 * limits.max_value + BODY_SLACK


def _plain_response(status, phrase, text):
    body = text.encode("utf-8")
    return (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode("ascii") + body


_date = [0, b""]
"""The second and the HTTP date of the last ``http_date`` answer."""


def http_date(now=None):
    """``now`` (default: the time) as an HTTP date, formatted once per second."""
    second = int(time.time() if now is None else now)
    if _date[0] != second or not _date[1]:
        _date[0], _date[1] = second, http.datetimeToString(second)
    return _date[1]


class GuardedRequest(server.Request):
    """A Request that stops reading a body that grows past the channel's cap."""

    _body_bytes = 0

    def process(self):
        """server.Request.process, with ``http_date`` for the Date header."""
        self.site = self.channel.site
        self.setHeader(b"server", server.version)
        self.setHeader(b"date", http_date())
        self.prepath = []
        self.postpath = list(map(unquote, self.path[1:].split(b"/")))
        if self.path == b"*":
            self._handleStar()
            return
        try:
            resrc = self.site.getResourceFor(self)
            if resource._IEncodingResource.providedBy(resrc):
                encoder = resrc.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(resrc)
        except BaseException:
            self.processingFailed(failure.Failure())

    def handleContentChunk(self, data):
        if getattr(self.channel, "closing", False):
            return
        self._body_bytes += len(data)
        if self._body_bytes > self.channel.max_body:
            self.channel.refuse(413, "Content Too Large", "request body too large\n")
            return
        super().handleContentChunk(data)


class GuardedChannel(http.HTTPChannel):
    """HTTPChannel with header and body deadlines and a body cap.

    Reads its settings from the site (``site.options``, ``site.limits``),
    set by WebSite.buildProtocol before the connection is made.
    """

    log = Logger()
    closing = False
    _deadline = None    # the armed timer of the running deadline
    _phase = None       # the running deadline: (due, seconds, what), or None
    _peer = _host = _secure = None
    header_timeout = 10.0
    body_timeout = 30.0
    max_body = 2 * 1024 * 1024 + BODY_SLACK

    def connectionMade(self):
        tune_tcp(self.transport)
        super().connectionMade()

    def seconds(self):
        """The clock of the deadlines (WebSite sets its reactor's ``seconds``)."""
        from twisted.internet import reactor
        return reactor.seconds()

    def dataReceived(self, data):
        if self.closing:
            return
        if data and self._phase is None and not self._handlingRequest:
            self._begin(self.header_timeout, "request headers")
        super().dataReceived(data)
        self._arm()

    def allHeadersReceived(self):
        self._cancel_deadline()
        if self.closing:
            return
        if self.length is not None and self.length > self.max_body:
            self.refuse(413, "Content Too Large", "request body too large\n")
            return
        super().allHeadersReceived()
        self._begin(self.body_timeout, "request body")

    def allContentReceived(self):
        self._cancel_deadline()
        if self.closing:
            return
        super().allContentReceived()

    def connectionLost(self, reason):
        self._cancel_deadline()
        super().connectionLost(reason)

    # A connection's addresses and security do not change: looked up once,
    # not for every Request (twisted.web asks for each one).
    def getPeer(self):
        if self._peer is None:
            self._peer = super().getPeer()
        return self._peer

    def getHost(self):
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def isSecure(self):
        if self._secure is None:
            self._secure = super().isSecure()
        return self._secure

    def refuse(self, status, phrase, text):
        """Answer ``status`` now, read nothing more, and close."""
        if self.closing:
            return
        self.closing = True
        self._cancel_deadline()
        self.lineReceived = self.rawDataReceived = lambda *args: None
        self.transport.write(_plain_response(status, phrase, text))
        self.log.info("web client {peer}: {status} {text}", peer=str(self.transport.getPeer()),
                      status=status, text=text.strip())
        self.timeoutConnection()

    def _begin(self, seconds, what):
        """Start a deadline of ``seconds`` from now (its timer: see ``_arm``)."""
        self._cancel_deadline()
        self._phase = (self.seconds() + seconds, seconds, what)

    def _arm(self):
        """Arm the timer of a deadline still running after the bytes received."""
        if self._phase is None or self._deadline is not None or self.closing:
            return
        due, seconds, what = self._phase
        self._deadline = self.callLater(max(0.0, due - self.seconds()), self._too_slow,
                                        seconds, what)

    def _cancel_deadline(self):
        self._phase = None
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, seconds, what):
        self._deadline = self._phase = None
        if self.transport is None:  # taken over (websocket upgrade)
            return
        self.refuse(408, "Request Timeout", f"{what} not received within {seconds:g} s\n")


class _Counted(policies.ProtocolWrapper):
    """Counts its connection in a ConnectionGate while it is open."""

    def __init__(self, gate, source, wrapped):
        super().__init__(gate, wrapped)
        self.source = source


class _Refused(protocol.Protocol):
    """Answers 503 (too many connections) and closes."""

    def __init__(self, text):
        self.text = text

    def makeConnection(self, transport):
        super().makeConnection(transport)
        transport.write(_plain_response(503, "Service Unavailable", self.text))
        transport.loseConnection()

    def dataReceived(self, data):
        pass


class ConnectionGate:
    """Caps open connections: ``limit`` in all, ``per_source`` per client address."""

    log = Logger()

    def __init__(self, limit, per_source):
        self.limit = limit
        self.per_source = per_source
        self.open = 0
        self.by_source = {}
        self.refused = 0

    @staticmethod
    def source_of(addr):
        return getattr(addr, "host", None) or type(addr).__name__

    def wrap(self, addr, build):
        """A protocol for a connection from ``addr``: ``build()`` wrapped, or a refusal."""
        source = self.source_of(addr)
        if self.open >= self.limit:
            return self._refuse(source, f"too many web connections (limit {self.limit})\n")
        if self.by_source.get(source, 0) >= self.per_source:
            return self._refuse(source, "too many web connections from this address "
                                f"(limit {self.per_source})\n")
        wrapped = build()
        if wrapped is None:
            return None
        return _Counted(self, source, wrapped)

    def _refuse(self, source, text):
        self.refused += 1
        self.log.info("refused a web connection from {source}: {text}", source=source,
                      text=text.strip())
        return _Refused(text)

    # The WrappingFactory interface ProtocolWrapper calls.
    def registerProtocol(self, p):
        self.open += 1
        self.by_source[p.source] = self.by_source.get(p.source, 0) + 1

    def unregisterProtocol(self, p):
        self.open -= 1
        left = self.by_source.get(p.source, 1) - 1
        if left:
            self.by_source[p.source] = left
        else:
            self.by_source.pop(p.source, None)
