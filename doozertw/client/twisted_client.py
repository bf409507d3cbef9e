"""The Twisted doozer client: every call returns a Deferred.

``DoozerClient(target)`` takes a doozer URI, one ``host:port`` or a list of
them. It connects on first use (or ``connect()``), presents the URI's
secret with ACCESS on every new connection, and pipelines requests on one
connection.

Connection states, reported to listeners added with ``add_listener``:

- ``CONNECTING``: first connection being made.
- ``CONNECTED``: requests flow.
- ``SUSPENDED``: the connection was lost; the client tries the addresses in
  turn (backing off after each full round) and holds new requests.
- ``LOST``: no address answered within ``suspend_timeout`` seconds; every
  held request failed with ConnectionLost. The next request starts over.
- ``CLOSED``: ``close()`` was called.

Requests in flight when a connection is lost: reads and WAITs are sent
again on the next connection (so a watch resumes where it was); SET, DEL
and NOP fail with ConnectionLost, because they may have been applied.
"""

import enum

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from zope.interface import implementer
from twisted.python.failure import Failure

from doozertw.client.core import ConnectionLost, WaitTimeout, call
from doozertw.client.protocol import DoozerClientProtocol
from doozertw.client.uri import resolve
from doozertw.client.verbs import Verbs
from doozertw.client.watch import Watch


class State(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"
    CLOSED = "closed"


class TCPConnector:
    """``connector(address)`` -> Deferred DoozerClientProtocol over TCP,
    or over TLS when ``tls`` (a ClientTLS) is given: the server's
    certificate must chain to ``tls.ca`` and name the host dialed (or
    ``tls.name``); a failed verification fails the connection attempt."""

    def __init__(self, reactor, timeout=5.0, tls=None):
        self.reactor = reactor
        self.timeout = timeout
        self.tls = tls

    def __call__(self, address):
        endpoint = HostnameEndpoint(self.reactor, address.host, address.port,
                                    timeout=self.timeout)
        if self.tls is None:
            return connectProtocol(endpoint, DoozerClientProtocol())
        endpoint = wrapClientTLS(self.tls.twisted_options(address.host), endpoint)
        d = connectProtocol(endpoint, TLSClientProtocol())
        d.addCallback(lambda proto: proto.handshake)
        return d


@implementer(IHandshakeListener)
class TLSClientProtocol(DoozerClientProtocol):
    """A DoozerClientProtocol whose ``handshake`` Deferred fires with itself
    once the TLS handshake (server verified) completed, or fails with
    ConnectionLost naming the reason if the connection ends before that:
    the connection attempt fails instead of counting as connected."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handshake = defer.Deferred()

    def handshakeCompleted(self):
        if not self.handshake.called:
            self.handshake.callback(self)

    def connectionLost(self, reason=None):
        if not self.handshake.called:
            why = reason.getErrorMessage() if reason is not None else "connection lost"
            self.handshake.errback(ConnectionLost(f"TLS handshake failed: {why}"))
        super().connectionLost(reason)


class _Request:
    """A caller's request, which may travel over more than one connection."""

    __slots__ = ("call", "d", "inner")

    def __init__(self, call_, d):
        self.call = call_
        self.d = d
        self.inner = None


class DoozerClient(Verbs):
    """A doozer client on Twisted; see the module docstring."""

    log = Logger()

    def __init__(self, target, secret=None, reactor=None, connector=None,
                 suspend_timeout=30.0, retry_delay=0.1, max_retry_delay=2.0, tls=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.uri = resolve(target, secret, tls)
        self._secret = self.uri.secret
        self._connector = (connector if connector is not None
                           else TCPConnector(reactor, tls=self.uri.tls))
        self.suspend_timeout = suspend_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.state = None
        self.address = None
        self._listeners = []
        self._proto = None
        self._held = []
        self._attempting = False
        self._next_index = 0
        self._generation = 0
        self._delay = retry_delay
        self._give_up = None
        self._retry = None
        self._connected_waiters = []

    # -- state ---------------------------------------------------------------

    def add_listener(self, listener):
        """Call ``listener(state)`` on every state change."""
        self._listeners.append(listener)

    def remove_listener(self, listener):
        self._listeners.remove(listener)

    def _set_state(self, state):
        if state == self.state:
            return
        self.state = state
        self.log.info("doozer client {state} ({address})",
                      state=state.value, address=str(self.address))
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                self.log.failure("state listener failed")

    def connect(self):
        """Deferred self, fired once connected (fails if it gives up)."""
        if self.state == State.CONNECTED:
            return defer.succeed(self)
        d = defer.Deferred()
        self._connected_waiters.append(d)
        self._ensure_connecting()
        return d

    def close(self):
        """Close the connection and fail everything pending."""
        self._set_state(State.CLOSED)
        self._cancel_timers()
        held, self._held = self._held, []
        for request in held:
            request.d.errback(ConnectionLost("client closed"))
        self._fail_waiters(ConnectionLost("client closed"))
        if self._proto is not None:
            self._proto.close()

    # -- connecting ------------------------------------------------------------

    def _ensure_connecting(self):
        if self.state in (State.CONNECTED, State.CLOSED) or self._attempting:
            return
        if self.state is None or self.state == State.LOST:
            self._set_state(State.CONNECTING)
        if self._give_up is None:
            self._give_up = self.reactor.callLater(self.suspend_timeout, self._gave_up)
        self._attempt()

    def _attempt(self):
        self._retry = None
        if self.state in (State.CONNECTED, State.CLOSED, State.LOST):
            return
        addresses = self.uri.addresses
        address = addresses[self._next_index % len(addresses)]
        self._next_index += 1
        self._attempting = True
        self._generation += 1
        d = defer.maybeDeferred(self._connector, address)
        d.addCallback(self._opened, address, self._generation)
        d.addErrback(self._attempt_failed, address, self._generation)

    def _opened(self, proto, address, generation):
        if self.state in (State.CLOSED, State.LOST) or generation != self._generation:
            if generation == self._generation:
                self._attempting = False
            proto.close()
            return None
        proto.address = address
        proto.on_lost = self._on_lost
        if self._secret:
            d = proto.send(call("ACCESS", value=self._secret))
            d.addCallbacks(lambda _: self._ready(proto, address),
                           self._refused, errbackArgs=(proto,))
            return d
        self._ready(proto, address)
        return None

    def _ready(self, proto, address):
        self._attempting = False
        if self.state in (State.CLOSED, State.LOST):
            proto.close()
            return
        if proto.lost:
            self._attempt_failed(Failure(ConnectionLost("lost while connecting")),
                                 address, self._generation)
            return
        self._proto = proto
        self.address = address
        self._delay = self.retry_delay
        self._cancel_timers()
        self._set_state(State.CONNECTED)
        held, self._held = self._held, []
        for request in held:
            self._send(request)
        waiters, self._connected_waiters = self._connected_waiters, []
        for d in waiters:
            d.callback(self)

    def _refused(self, failure, proto):
        """The server refused our secret: nothing will work, so give up now."""
        if failure.check(ConnectionLost):
            return failure
        self._attempting = False
        proto.on_lost = None
        proto.close()
        self._cancel_timers()
        self._generation += 1
        self._set_state(State.LOST)
        self._fail_all(failure.value)
        return None

    def _attempt_failed(self, failure, address, generation):
        if generation != self._generation:
            return
        self._attempting = False
        self.log.info("doozer client: {address} failed: {why}",
                      address=str(address), why=failure.getErrorMessage())
        if self.state in (State.CLOSED, State.LOST, State.CONNECTED):
            return
        if self._next_index % len(self.uri.addresses) == 0:
            delay, self._delay = self._delay, min(self._delay * 2, self.max_retry_delay)
        else:
            delay = 0
        self._attempting = True
        self._retry = self.reactor.callLater(delay, self._retry_now)

    def _retry_now(self):
        self._attempting = False
        self._attempt()

    def _on_lost(self, proto, reason):
        if proto is not self._proto:
            return
        self._proto = None
        if self.state == State.CLOSED:
            return
        self._set_state(State.SUSPENDED)
        self._give_up = self.reactor.callLater(self.suspend_timeout, self._gave_up)
        self._attempt()

    def _gave_up(self):
        self._give_up = None
        if self.state == State.CONNECTED:
            return
        self._cancel_timers()
        self._attempting = False
        self._generation += 1
        self._set_state(State.LOST)
        self._fail_all(
            ConnectionLost(f"no doozer server reachable within {self.suspend_timeout}s"))

    def _fail_all(self, error):
        held, self._held = self._held, []
        for request in held:
            request.d.errback(error)
        self._fail_waiters(error)

    def _fail_waiters(self, error):
        waiters, self._connected_waiters = self._connected_waiters, []
        for d in waiters:
            d.errback(error)

    def _cancel_timers(self):
        for name in ("_give_up", "_retry"):
            timer = getattr(self, name)
            setattr(self, name, None)
            if timer is not None and timer.active():
                timer.cancel()

    # -- requests --------------------------------------------------------------

    def request(self, call_):
        """Deferred result of one Call (see ``core.call``)."""
        request = _Request(call_, None)
        request.d = defer.Deferred(lambda _: self._cancel(request))
        if self.state == State.CLOSED:
            request.d.errback(ConnectionLost("client closed"))
        elif self.state == State.CONNECTED:
            self._send(request)
        else:
            self._held.append(request)
            self._ensure_connecting()
        return request.d

    def _cancel(self, request):
        if request in self._held:
            self._held.remove(request)
        inner, request.inner = request.inner, None
        if inner is not None:
            inner.cancel()

    def _send(self, request):
        inner = self._proto.send(request.call)
        request.inner = inner
        inner.addCallbacks(self._answered, self._failed,
                           callbackArgs=(request,), errbackArgs=(request,))

    def _answered(self, result, request):
        request.inner = None
        request.d.callback(result)

    def _failed(self, failure, request):
        request.inner = None
        if failure.check(defer.CancelledError):
            return None
        if (failure.check(ConnectionLost) and request.call.retriable
                and self.state not in (State.CLOSED, State.LOST)):
            if self.state == State.CONNECTED:
                self._send(request)
            else:
                self._held.append(request)
            return None
        request.d.errback(failure)
        return None

    # -- verbs -------------------------------------------------------------------

    def wait(self, glob, rev, timeout=None):
        """Deferred first Event matching ``glob`` at or after ``rev``.

        With ``timeout`` (seconds) it fails with WaitTimeout when nothing
        matched in time.
        """
        d = self.request(call("WAIT", path=glob, rev=rev))
        if timeout is not None:
            d.addTimeout(timeout, self.reactor, onTimeoutCancel=_wait_timed_out)
        return d


    # -- helpers -----------------------------------------------------------------

    def many(self, calls):
        """Deferred list of outcomes (result or exception) of pipelined calls."""
        ds = [self.request(c) for c in calls]
        d = defer.DeferredList(ds, consumeErrors=True)
        d.addCallback(lambda results: [r if ok else r.value for ok, r in results])
        return d

    @defer.inlineCallbacks
    def run_plan(self, plan):
        """Deferred answer of a plan (see ``plans``)."""
        try:
            calls = next(plan)
            while True:
                outcomes = yield self.many(calls)
                calls = plan.send(outcomes)
        except StopIteration as stop:
            return stop.value

    def watch(self, glob, rev=None, callback=None, timeout=None):
        """A started Watch of every change matching ``glob`` from ``rev``.

        ``rev`` None means changes after the current revision. Deliveries go
        to ``callback(event)`` if given, else to ``async for``/``next()``.
        """
        watch = Watch(self, glob, rev, callback, timeout)
        watch.start()
        return watch


def _wait_timed_out(result, timeout):
    raise WaitTimeout()


def connect(target, secret=None, reactor=None, **options):
    """Deferred connected DoozerClient for a URI or address list."""
    return DoozerClient(target, secret=secret, reactor=reactor, **options).connect()
