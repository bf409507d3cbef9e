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

Requests in flight when a connection is lost: reads and WAITs (and the
idempotent lease verbs: keepalive, lease_ttl, leases) are sent again on the
next connection (so a watch resumes where it was); SET, DEL, NOP, TXN,
LEASE_GRANT and LEASE_REVOKE fail with ConnectionLost, because they may
have been applied.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from zope.interface import implementer
from twisted.python.failure import Failure

from doozertw.client import plans
from doozertw.client.core import (
    Call, ConnectionLost, LeaseInfo, Op, TxnResult, WaitTimeout, call)
from doozertw.client.protocol import DoozerClientProtocol
from doozertw.client.uri import Address, Target, resolve
from doozertw.client.verbs import Verbs
from doozertw.client.watch import Watch
from doozertw.store import Event
from doozertw.store.mutation import Compare
from doozertw.tlsutil import ClientTLS

T = TypeVar("T")


class State(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"
    CLOSED = "closed"


Connector = Callable[[Address], "defer.Deferred[DoozerClientProtocol]"]
"""``connector(address)``: Deferred connected DoozerClientProtocol (TCPConnector)."""

Listener = Callable[[State], object]
"""``listener(state)``, told every State change."""


class TCPConnector:
    """``connector(address)`` -> Deferred DoozerClientProtocol over TCP,
    or over TLS when ``tls`` (a ClientTLS) is given: the server's
    certificate must chain to ``tls.ca`` and name the host dialed (or
    ``tls.name``); a failed verification fails the connection attempt."""

    def __init__(self, reactor: Any, timeout: float = 5.0, tls: ClientTLS | None = None) -> None:
        # IReactorTCP and IReactorTime; zope interfaces are opaque to mypy.
        self.reactor = reactor
        self.timeout = timeout
        self.tls = tls

    def __call__(self, address: Address) -> defer.Deferred[DoozerClientProtocol]:
        # Endpoints are zope interfaces (opaque to mypy); connectProtocol is untyped.
        endpoint: Any = HostnameEndpoint(self.reactor, address.host, address.port,
                                         timeout=self.timeout)
        d: defer.Deferred[Any]
        if self.tls is None:
            d = connectProtocol(endpoint, DoozerClientProtocol())  # type: ignore[no-untyped-call]
            return d
        endpoint = wrapClientTLS(self.tls.twisted_options(address.host), endpoint)
        d = connectProtocol(endpoint, TLSClientProtocol())  # type: ignore[no-untyped-call]
        d.addCallback(lambda proto: proto.handshake)
        return d


@implementer(IHandshakeListener)
class TLSClientProtocol(DoozerClientProtocol):
    """A DoozerClientProtocol whose ``handshake`` Deferred fires with itself
    once the TLS handshake (server verified) completed, or fails with
    ConnectionLost naming the reason if the connection ends before that:
    the connection attempt fails instead of counting as connected."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handshake: defer.Deferred[TLSClientProtocol] = defer.Deferred()

    def handshakeCompleted(self) -> None:
        if not self.handshake.called:
            self.handshake.callback(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.handshake.called:
            why = reason.getErrorMessage() if reason is not None else "connection lost"
            self.handshake.errback(ConnectionLost(f"TLS handshake failed: {why}"))
        super().connectionLost(reason)


class _Request:
    """A caller's request, which may travel over more than one connection."""

    __slots__ = ("call", "d", "inner")

    def __init__(self, call_: Call, d: defer.Deferred[Any] | None) -> None:
        self.call = call_
        # None only until ``request`` sets it (its canceller needs this request).
        self.d = cast("defer.Deferred[Any]", d)
        self.inner: defer.Deferred[Any] | None = None


class DoozerClient(Verbs):
    """A doozer client on Twisted; see the module docstring."""

    log = Logger()

    def __init__(self, target: Target, secret: bytes | str | None = None, reactor: Any = None,
                 connector: Connector | None = None, suspend_timeout: float = 30.0,
                 retry_delay: float = 0.1, max_retry_delay: float = 2.0,
                 tls: ClientTLS | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        # IReactorTime (and IReactorTCP for the default connector).
        self.reactor: Any = reactor
        self.uri = resolve(target, secret, tls)
        self._secret = self.uri.secret
        self._connector: Connector = (connector if connector is not None
                                      else TCPConnector(reactor, tls=self.uri.tls))
        self.suspend_timeout = suspend_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.state: State | None = None
        self.address: Address | None = None
        self._listeners: list[Listener] = []
        self._proto: DoozerClientProtocol | None = None
        self._held: list[_Request] = []
        self._attempting = False
        self._next_index = 0
        self._generation = 0
        self._delay = retry_delay
        self._give_up: Any = None     # IDelayedCall
        self._retry: Any = None       # IDelayedCall
        self._connected_waiters: list[defer.Deferred[DoozerClient]] = []

    if TYPE_CHECKING:
        # Verbs' methods with this client's results (doozertw.client.verbs).
        def get(self, path: str, rev: int | None = None) -> defer.Deferred[tuple[bytes, int]]: ...

        def set(self, path: str, rev: int, value: bytes | str,
                lease: int = 0) -> defer.Deferred[int]: ...

        def delete(self, path: str, rev: int) -> defer.Deferred[int]: ...

        def rev(self) -> defer.Deferred[int]: ...

        def stat(self, path: str, rev: int | None = None) -> defer.Deferred[tuple[int, int]]: ...

        def getdir(self, path: str, rev: int | None = None,
                   offset: int = 0) -> defer.Deferred[str]: ...

        def walk(self, glob: str, rev: int | None = None,
                 offset: int = 0) -> defer.Deferred[Event]: ...

        def nop(self) -> defer.Deferred[None]: ...

        def self_id(self) -> defer.Deferred[str]: ...

        self = self_id

        def access(self, secret: bytes | str) -> defer.Deferred[None]: ...

        def grant_lease(self, ttl: int, id: int = 0) -> defer.Deferred[LeaseInfo]: ...

        def keepalive(self, id: int) -> defer.Deferred[LeaseInfo]: ...

        def revoke_lease(self, id: int) -> defer.Deferred[int]: ...

        def lease_ttl(self, id: int) -> defer.Deferred[LeaseInfo]: ...

        def leases(self) -> defer.Deferred[list[LeaseInfo]]: ...

        def txn(self, compares: Iterable[Compare], success: Iterable[Op] = (),
                failure: Iterable[Op] = ()) -> defer.Deferred[TxnResult]: ...

        def getdir_all(self, path: str, rev: int | None = None) -> defer.Deferred[list[str]]: ...

        def walk_all(self, glob: str, rev: int | None = None) -> defer.Deferred[list[Event]]: ...

        def find(self, root: str = "/", rev: int | None = None) -> defer.Deferred[list[str]]: ...

        def tree(self, root: str = "/",
                 rev: int | None = None) -> defer.Deferred[list[plans.TreeEntry]]: ...

    # -- state ---------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state)`` on every state change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; one not added (or removed already) is ignored."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _set_state(self, state: State) -> None:
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

    def connect(self) -> defer.Deferred[DoozerClient]:
        """Deferred self, fired once connected (fails if it gives up)."""
        if self.state == State.CONNECTED:
            return defer.succeed(self)
        d: defer.Deferred[DoozerClient] = defer.Deferred()
        self._connected_waiters.append(d)
        self._ensure_connecting()
        return d

    def close(self) -> None:
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

    def _ensure_connecting(self) -> None:
        if self.state in (State.CONNECTED, State.CLOSED) or self._attempting:
            return
        if self.state is None or self.state == State.LOST:
            self._set_state(State.CONNECTING)
        if self._give_up is None:
            self._give_up = self.reactor.callLater(self.suspend_timeout, self._gave_up)
        self._attempt()

    def _attempt(self) -> None:
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

    def _opened(self, proto: DoozerClientProtocol, address: Address,
                generation: int) -> defer.Deferred[Any] | None:
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

    def _ready(self, proto: DoozerClientProtocol, address: Address) -> None:
        self._attempting = False
        if self.state in (State.CLOSED, State.LOST):
            proto.close()
            return
        if proto.lost:
            lost = Failure(ConnectionLost("lost while connecting"))  # type: ignore[no-untyped-call]
            self._attempt_failed(lost, address, self._generation)
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

    def _refused(self, failure: Failure, proto: DoozerClientProtocol) -> Failure | None:
        """The server refused our secret: nothing will work, so give up now."""
        if failure.check(ConnectionLost):  # type: ignore[no-untyped-call]
            return failure
        self._attempting = False
        proto.on_lost = None
        proto.close()
        self._cancel_timers()
        self._generation += 1
        self._set_state(State.LOST)
        self._fail_all(cast(BaseException, failure.value))   # never None in a Failure
        return None

    def _attempt_failed(self, failure: Failure, address: Address, generation: int) -> None:
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

    def _retry_now(self) -> None:
        self._attempting = False
        self._attempt()

    def _on_lost(self, proto: DoozerClientProtocol, reason: Failure | None) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        if self.state == State.CLOSED:
            return
        self._set_state(State.SUSPENDED)
        self._give_up = self.reactor.callLater(self.suspend_timeout, self._gave_up)
        self._attempt()

    def _gave_up(self) -> None:
        self._give_up = None
        if self.state == State.CONNECTED:
            return
        self._cancel_timers()
        self._attempting = False
        self._generation += 1
        self._set_state(State.LOST)
        self._fail_all(
            ConnectionLost(f"no doozer server reachable within {self.suspend_timeout}s"))

    def _fail_all(self, error: BaseException) -> None:
        held, self._held = self._held, []
        for request in held:
            request.d.errback(error)
        self._fail_waiters(error)

    def _fail_waiters(self, error: BaseException) -> None:
        waiters, self._connected_waiters = self._connected_waiters, []
        for d in waiters:
            d.errback(error)

    def _cancel_timers(self) -> None:
        for name in ("_give_up", "_retry"):
            timer = getattr(self, name)
            setattr(self, name, None)
            if timer is not None and timer.active():
                timer.cancel()

    # -- requests --------------------------------------------------------------

    def request(self, call_: Call) -> defer.Deferred[Any]:
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

    def _cancel(self, request: _Request) -> None:
        if request in self._held:
            self._held.remove(request)
        inner, request.inner = request.inner, None
        if inner is not None:
            inner.cancel()

    def _send(self, request: _Request) -> None:
        # Called only while CONNECTED, when there is a connection.
        inner = cast(DoozerClientProtocol, self._proto).send(request.call)
        request.inner = inner
        inner.addCallbacks(self._answered, self._failed,
                           callbackArgs=(request,), errbackArgs=(request,))

    def _answered(self, result: Any, request: _Request) -> None:
        request.inner = None
        request.d.callback(result)

    def _failed(self, failure: Failure, request: _Request) -> None:
        request.inner = None
        if failure.check(defer.CancelledError):  # type: ignore[no-untyped-call]
            return None
        if (failure.check(ConnectionLost)  # type: ignore[no-untyped-call]
                and request.call.retriable
                and self.state not in (State.CLOSED, State.LOST)):
            if self.state == State.CONNECTED:
                self._send(request)
            else:
                self._held.append(request)
            return None
        request.d.errback(failure)
        return None

    # -- verbs -------------------------------------------------------------------

    def wait(self, glob: str, rev: int,
             timeout: float | None = None) -> defer.Deferred[Event]:
        """Deferred first Event matching ``glob`` at or after ``rev``.

        With ``timeout`` (seconds) it fails with WaitTimeout when nothing
        matched in time.
        """
        d = self.request(call("WAIT", path=glob, rev=rev))
        if timeout is not None:
            d.addTimeout(timeout, self.reactor, onTimeoutCancel=_wait_timed_out)
        return d


    # -- helpers -----------------------------------------------------------------

    def many(self, calls: Iterable[Call]) -> defer.Deferred[list[Any]]:
        """Deferred list of outcomes (result or exception) of pipelined calls."""
        ds = [self.request(c) for c in calls]
        d = defer.DeferredList(ds, consumeErrors=True)
        return d.addCallback(lambda results: [r if ok else r.value for ok, r in results])

    @defer.inlineCallbacks
    def run_plan(self, plan: plans.Plan[T]) -> Generator[defer.Deferred[Any], Any, T]:
        """Deferred answer of a plan (see ``plans``)."""
        try:
            calls = next(plan)
            while True:
                outcomes = yield self.many(calls)
                calls = plan.send(outcomes)
        except StopIteration as stop:
            answer: T = stop.value
            return answer

    def watch(self, glob: str, rev: int | None = None,
              callback: Callable[[Event], object] | None = None,
              timeout: float | None = None) -> Watch:
        """A started Watch of every change matching ``glob`` from ``rev``.

        ``rev`` None means changes after the current revision. Deliveries go
        to ``callback(event)`` if given, else to ``async for``/``next()``.
        """
        watch = Watch(self, glob, rev, callback, timeout)
        watch.start()
        return watch


def _wait_timed_out(result: object, timeout: float) -> NoReturn:
    raise WaitTimeout()


def connect(target: Target, secret: bytes | str | None = None, reactor: Any = None,
            **options: Any) -> defer.Deferred[DoozerClient]:
    """Deferred connected DoozerClient for a URI or address list."""
    return DoozerClient(target, secret=secret, reactor=reactor, **options).connect()
