"""The blocking doozer client: plain sockets, no reactor, no threads.

Same API shape as the Twisted client, but every call returns its result.
It speaks the same protocol through the same pure core (``core``,
``plans``), so it is a peer of the Twisted client rather than a wrapper:
a script, a thread of a bigger program or a program that runs its own
Twisted reactor can all use it, and it starts instantly. With ``tls`` (a
ClientTLS, or ``tls_ca=`` in the URI) it speaks TLS and verifies the server.

Pipelining: ``many(calls)`` and the helpers (``getdir_all``, ``walk_all``,
``find``) send a batch of requests before reading any answer; answers are
matched by tag in any order, and an answer for another request (a watch's
WAIT, say) is kept for it.

Failover: when the connection fails the client tries the addresses in turn
(backing off after each full round) for up to ``suspend_timeout`` seconds,
presents its secret again, and re-sends every unanswered read and WAIT
(and keepalive, lease_ttl, leases, which are idempotent). Unanswered SET,
DEL, NOP, TXN, LEASE_GRANT and LEASE_REVOKE raise ConnectionLost (they may
have been applied). If no address answers in time every call raises ConnectionLost
(state LOST); the next call starts over. Listeners hear ``"connected"``,
``"suspended"`` and ``"lost"``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from doozertw.client import plans
from doozertw.client.core import (
    Call, ConnectionLost, LeaseInfo, Op, ResponseReader, Tags, TxnResult, WaitTimeout, call,
    result_of)
from doozertw.client.uri import Address, Target, resolve
from doozertw.client.verbs import Verbs
from doozertw.errors import DoozerError
from doozertw.store import Event
from doozertw.store.mutation import Compare
from doozertw.tlsutil import ClientTLS
from doozertw.wire import ResponseMessage

T = TypeVar("T")

OpenSocket = Callable[[tuple[str, int], float], socket.socket]
"""``open_socket((host, port), timeout)``: a connected socket (socket.create_connection)."""

Listener = Callable[[str], object]
"""``listener(state)``, told every state change (CONNECTED, SUSPENDED, LOST, CLOSED)."""

CONNECTED = "connected"
SUSPENDED = "suspended"
LOST = "lost"
CLOSED = "closed"


class _Pending:
    """One request until its answer: the Call, its tag, and its outcome."""

    __slots__ = ("call", "tag", "done", "result", "error", "abandoned", "response")

    def __init__(self, call_: Call) -> None:
        self.call = call_
        self.tag: int | None = None
        self.done = False
        self.result: Any = None
        self.error: DoozerError | None = None
        self.abandoned = False
        self.response: ResponseMessage | None = None    # the server's Response, once it came

    def finish(self, result: Any = None, error: DoozerError | None = None) -> None:
        self.done = True
        self.result = result
        self.error = error


class BlockingClient(Verbs):
    """A doozer client for ordinary (blocking) code; see the module docstring."""

    def __init__(self, target: Target, secret: bytes | str | None = None,
                 connect_timeout: float = 5.0, suspend_timeout: float = 30.0,
                 retry_delay: float = 0.1, max_retry_delay: float = 2.0,
                 open_socket: OpenSocket | None = None,
                 sleep: Callable[[float], object] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 tls: ClientTLS | None = None) -> None:
        self.uri = resolve(target, secret, tls)
        self._secret = self.uri.secret
        self._tls_context = self.uri.tls.ssl_context() if self.uri.tls else None
        self.connect_timeout = connect_timeout
        self.suspend_timeout = suspend_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._open_socket: OpenSocket = open_socket or socket.create_connection
        self._sleep = sleep
        self._now = monotonic
        self.state: str | None = None
        self.address: Address | None = None
        self._listeners: list[Listener] = []
        self._sock: socket.socket | None = None
        self._reader = ResponseReader()
        self._tags = Tags()
        self._by_tag: dict[int, _Pending] = {}
        self._orphans: list[_Pending] = []
        self._next_index = 0

    if TYPE_CHECKING:
        # Verbs' methods with this client's results (doozertw.client.verbs).
        def get(self, path: str, rev: int | None = None) -> tuple[bytes, int]: ...

        def set(self, path: str, rev: int, value: bytes | str, lease: int = 0) -> int: ...

        def delete(self, path: str, rev: int) -> int: ...

        def rev(self) -> int: ...

        def stat(self, path: str, rev: int | None = None) -> tuple[int, int]: ...

        def getdir(self, path: str, rev: int | None = None, offset: int = 0) -> str: ...

        def walk(self, glob: str, rev: int | None = None, offset: int = 0) -> Event: ...

        def nop(self) -> None: ...

        def self_id(self) -> str: ...

        self = self_id

        def access(self, secret: bytes | str) -> None: ...

        def grant_lease(self, ttl: int, id: int = 0) -> LeaseInfo: ...

        def keepalive(self, id: int) -> LeaseInfo: ...

        def revoke_lease(self, id: int) -> int: ...

        def lease_ttl(self, id: int) -> LeaseInfo: ...

        def leases(self) -> list[LeaseInfo]: ...

        def txn(self, compares: Iterable[Compare], success: Iterable[Op] = (),
                failure: Iterable[Op] = ()) -> TxnResult: ...

        def getdir_all(self, path: str, rev: int | None = None) -> list[str]: ...

        def walk_all(self, glob: str, rev: int | None = None) -> list[Event]: ...

        def find(self, root: str = "/", rev: int | None = None) -> list[str]: ...

        def tree(self, root: str = "/",
                 rev: int | None = None) -> list[plans.TreeEntry]: ...

    # -- state -------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state)`` on every state change."""
        self._listeners.append(listener)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            for listener in list(self._listeners):
                listener(state)

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._drop_socket()
        self._set_state(CLOSED)

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # -- connecting ----------------------------------------------------------

    def connect(self) -> BlockingClient:
        """Connect now (calls connect on demand anyway); returns self."""
        if self.state == CLOSED:
            raise ConnectionLost("client closed")
        if self._sock is None:
            self._reconnect()
        return self

    def _reconnect(self) -> None:
        """Open a connection to some address, or raise ConnectionLost (LOST)."""
        self._drop_socket()
        deadline = self._now() + self.suspend_timeout
        delay = self.retry_delay
        addresses = self.uri.addresses
        last_error: Exception | None = None
        first = self._next_index
        while True:
            address = addresses[self._next_index % len(addresses)]
            self._next_index += 1
            try:
                self._open(address)
                return
            except (OSError, ConnectionLost) as e:
                self._drop_socket()
                last_error = e
            if self._now() >= deadline and self._next_index - first >= len(addresses):
                break
            if self._next_index % len(addresses) == 0:
                self._sleep(min(delay, max(0.0, deadline - self._now())))
                delay = min(delay * 2, self.max_retry_delay)
        self._set_state(LOST)
        error = ConnectionLost(f"no doozer server reachable: {_describe(last_error)}")
        for pending in self._orphans + list(self._by_tag.values()):
            pending.finish(error=error)
        self._orphans = []
        self._by_tag = {}
        raise error

    def _open(self, address: Address) -> None:
        sock = self._open_socket((address.host, address.port), self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls_context is not None:
            sock = self._wrap_tls(sock, address)
        sock.settimeout(None)
        self._sock = sock
        self._reader = ResponseReader()
        self._by_tag = {}
        self._tags = Tags()
        if self._secret:
            try:
                access = self._await(self._write(call("ACCESS", value=self._secret)),
                                     timeout=self.connect_timeout, reconnect=False)
            except WaitTimeout:
                self._drop_socket()
                raise ConnectionLost("no answer to ACCESS") from None
            if isinstance(access.error, ConnectionLost):
                raise access.error
            if access.error is not None:
                self._refused(access.error)
        orphans = [p for p in self._orphans if not p.done and not p.abandoned]
        for pending in orphans:
            self._write_pending(pending)
        self._orphans = []
        self.address = address
        self._set_state(CONNECTED)

    def _wrap_tls(self, sock: socket.socket, address: Address) -> ssl.SSLSocket:
        """``sock`` after a verified TLS handshake (within connect_timeout);
        a failed verification raises ConnectionLost naming the reason."""
        try:    # called only with TLS on: both casts hold
            return cast(ssl.SSLContext, self._tls_context).wrap_socket(
                sock, server_hostname=cast(ClientTLS, self.uri.tls).server_name(address.host))
        except ssl.SSLError as e:
            sock.close()
            raise ConnectionLost(f"TLS to {address} failed: {e.reason or e}") from None

    def _refused(self, error: DoozerError) -> None:
        """The server refused our secret: fail everything waiting, stay LOST."""
        self._drop_socket()
        self._set_state(LOST)
        for pending in self._orphans:
            pending.finish(error=error)
        self._orphans = []
        raise error

    def _lost(self) -> None:
        """The socket failed: fail unanswered writes, reconnect, re-send reads."""
        self._drop_socket()
        self._set_state(SUSPENDED)
        for pending in self._by_tag.values():
            if pending.done or pending.abandoned:
                continue
            if pending.call.retriable:
                self._orphans.append(pending)
            else:
                pending.finish(error=ConnectionLost())
        self._by_tag = {}
        self._reconnect()

    # -- wire ------------------------------------------------------------------

    def _write(self, call_: Call) -> _Pending:
        pending = _Pending(call_)
        self._write_pending(pending)
        return pending

    def _write_pending(self, pending: _Pending) -> None:
        pending.tag = self._tags.take()
        self._by_tag[pending.tag] = pending
        try:
            cast(socket.socket, self._sock).sendall(pending.call.encode(pending.tag))
        except OSError:
            raise ConnectionLost("send failed") from None

    def _send(self, call_: Call) -> _Pending:
        """Send one call (connecting first if needed); returns its _Pending.

        If the send fails, a read is re-sent on the next connection and a
        write is finished with ConnectionLost.
        """
        if self.state == CLOSED:
            raise ConnectionLost("client closed")
        if self._sock is None:
            self._reconnect()
        pending = _Pending(call_)
        try:
            self._write_pending(pending)
        except ConnectionLost:
            self._lost()
        return pending

    def _await(self, pending: _Pending, timeout: float | None = None,
               reconnect: bool = True) -> _Pending:
        """Read until ``pending`` is answered; WaitTimeout after ``timeout`` s."""
        deadline = None if timeout is None else self._now() + timeout
        while not pending.done:
            if self._sock is None:
                if not reconnect:
                    pending.finish(error=ConnectionLost())
                    break
                self._lost()
                continue
            left = None if deadline is None else max(0.0, deadline - self._now())
            try:
                self._sock.settimeout(left)
                data = self._sock.recv(65536)
            except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
                if deadline is not None and self._now() >= deadline:
                    raise WaitTimeout() from None
                continue
            except OSError:
                data = b""
            if not data:
                self._drop_socket()
                if not reconnect:
                    pending.finish(error=ConnectionLost())
                    break
                self._lost()
                continue
            self._dispatch(data)
        return pending

    def _dispatch(self, data: bytes) -> None:
        try:
            responses = self._reader.feed(data)
        except DoozerError:
            self._drop_socket()
            return
        for response in responses:
            pending = self._by_tag.pop(response.tag, None)
            if pending is None:
                continue
            self._tags.release(response.tag)
            pending.response = response
            try:
                pending.finish(result=result_of(pending.call.verb, response))
            except DoozerError as e:
                pending.finish(error=e)

    def request(self, call_: Call, timeout: float | None = None) -> Any:
        """The result of one Call; raises its DoozerError.

        After ``timeout`` seconds without an answer it raises WaitTimeout
        and the request is abandoned: its late answer is dropped, and it is
        not re-sent after a reconnect (a timed-out keep-alive, say, must not
        reach a server later)."""
        pending = self._await_or_abandon(self._send(call_), timeout)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _await_or_abandon(self, pending: _Pending, timeout: float | None) -> _Pending:
        """``_await``; on WaitTimeout ``pending`` is abandoned first."""
        try:
            return self._await(pending, timeout)
        except WaitTimeout:
            pending.abandoned = True
            raise

    def exchange(self, call_: Call, timeout: float | None = None) -> ResponseMessage:
        """The server's raw Response to one Call, error codes included
        (for tests and tools that inspect the wire); raises ConnectionLost
        or WaitTimeout (abandoning the request) as ``request`` does."""
        pending = self._await_or_abandon(self._send(call_), timeout)
        if pending.response is None:    # then it failed: error is set
            raise cast(DoozerError, pending.error)
        return pending.response

    def many(self, calls: Iterable[Call]) -> list[Any]:
        """Outcomes (result or exception) of calls sent pipelined."""
        pendings = [self._send(c) for c in calls]
        for pending in pendings:
            self._await(pending)
        return [p.error if p.error is not None else p.result for p in pendings]

    # -- verbs -------------------------------------------------------------------

    def wait(self, glob: str, rev: int, timeout: float | None = None) -> Event:
        """First Event matching ``glob`` at or after ``rev``; WaitTimeout after ``timeout``."""
        pending = self._await_or_abandon(self._send(call("WAIT", path=glob, rev=rev)), timeout)
        if pending.error is not None:
            raise pending.error
        return cast(Event, pending.result)

    # -- helpers -----------------------------------------------------------------

    def run_plan(self, plan: plans.Plan[T]) -> T:
        return plans.drive_blocking(plan, self.many)

    def watch(self, glob: str, rev: int | None = None,
              timeout: float | None = None) -> BlockingWatch:
        """An iterator of every change matching ``glob`` from ``rev``."""
        if rev is None:
            rev = self.rev() + 1
        return BlockingWatch(self, glob, rev, timeout)


class BlockingWatch:
    """Iterator of Events; resumes at last delivered rev + 1 after a reconnect.

    ``next(watch)`` blocks until the next change; it raises WaitTimeout
    after ``timeout`` seconds without one (the watch stays usable), and the
    server's error (TOO_LATE, ...) or ConnectionLost otherwise.
    """

    def __init__(self, client: BlockingClient, glob: str, rev: int,
                 timeout: float | None = None) -> None:
        self.client = client
        self.glob = glob
        self.next_rev = rev
        self.timeout = timeout
        self._pending: _Pending | None = None

    def __iter__(self) -> BlockingWatch:
        return self

    def __next__(self) -> Event:
        return self.next(self.timeout)

    def next(self, timeout: float | None = None) -> Event:
        if self._pending is None:
            self._pending = self.client._send(call("WAIT", path=self.glob, rev=self.next_rev))
        pending = self.client._await(self._pending, timeout)
        self._pending = None
        if pending.error is not None:
            raise pending.error
        event: Event = pending.result
        self.next_rev = event.rev + 1
        return event

    def close(self) -> None:
        """Stop; the outstanding WAIT's late answer is dropped."""
        if self._pending is not None:
            self._pending.abandoned = True
            self._pending = None


def _describe(error: Exception | None) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error)


def connect(target: Target, secret: bytes | str | None = None,
            **options: Any) -> BlockingClient:
    """A connected BlockingClient for a URI or address list."""
    return BlockingClient(target, secret=secret, **options).connect()
