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
presents its secret again, and re-sends every unanswered read and WAIT.
Unanswered SET, DEL and NOP raise ConnectionLost (they may have been
applied). If no address answers in time every call raises ConnectionLost
(state LOST); the next call starts over. Listeners hear ``"connected"``,
``"suspended"`` and ``"lost"``.
"""

import socket
import ssl
import time

from doozertw.client import plans
from doozertw.client.core import ConnectionLost, ResponseReader, Tags, WaitTimeout, call, result_of
from doozertw.client.uri import resolve
from doozertw.client.verbs import Verbs
from doozertw.errors import DoozerError

CONNECTED = "connected"
SUSPENDED = "suspended"
LOST = "lost"
CLOSED = "closed"


class _Pending:
    """One request until its answer: the Call, its tag, and its outcome."""

    __slots__ = ("call", "tag", "done", "result", "error", "abandoned", "response")

    def __init__(self, call_):
        self.call = call_
        self.tag = None
        self.done = False
        self.result = None
        self.error = None
        self.abandoned = False
        self.response = None    # the server's Response, once it came

    def finish(self, result=None, error=None):
        self.done = True
        self.result = result
        self.error = error


class BlockingClient(Verbs):
    """A doozer client for ordinary (blocking) code; see the module docstring."""

    def __init__(self, target, secret=None, connect_timeout=5.0, suspend_timeout=30.0,
                 retry_delay=0.1, max_retry_delay=2.0, open_socket=None,
                 sleep=time.sleep, monotonic=time.monotonic, tls=None):
        self.uri = resolve(target, secret, tls)
        self._secret = self.uri.secret
        self._tls_context = self.uri.tls.ssl_context() if self.uri.tls else None
        self.connect_timeout = connect_timeout
        self.suspend_timeout = suspend_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._open_socket = open_socket or socket.create_connection
        self._sleep = sleep
        self._now = monotonic
        self.state = None
        self.address = None
        self._listeners = []
        self._sock = None
        self._reader = ResponseReader()
        self._tags = Tags()
        self._by_tag = {}
        self._orphans = []
        self._next_index = 0

    # -- state -------------------------------------------------------------

    def add_listener(self, listener):
        """Call ``listener(state)`` on every state change."""
        self._listeners.append(listener)

    def _set_state(self, state):
        if state != self.state:
            self.state = state
            for listener in list(self._listeners):
                listener(state)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._drop_socket()
        self._set_state(CLOSED)

    def _drop_socket(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # -- connecting ----------------------------------------------------------

    def connect(self):
        """Connect now (calls connect on demand anyway); returns self."""
        if self.state == CLOSED:
            raise ConnectionLost("client closed")
        if self._sock is None:
            self._reconnect()
        return self

    def _reconnect(self):
        """Open a connection to some address, or raise ConnectionLost (LOST)."""
        self._drop_socket()
        deadline = self._now() + self.suspend_timeout
        delay = self.retry_delay
        addresses = self.uri.addresses
        last_error = None
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

    def _open(self, address):
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

    def _wrap_tls(self, sock, address):
        """``sock`` after a verified TLS handshake (within connect_timeout);
        a failed verification raises ConnectionLost naming the reason."""
        try:
            return self._tls_context.wrap_socket(
                sock, server_hostname=self.uri.tls.server_name(address.host))
        except ssl.SSLError as e:
            sock.close()
            raise ConnectionLost(f"TLS to {address} failed: {e.reason or e}") from None

    def _refused(self, error):
        """The server refused our secret: fail everything waiting, stay LOST."""
        self._drop_socket()
        self._set_state(LOST)
        for pending in self._orphans:
            pending.finish(error=error)
        self._orphans = []
        raise error

    def _lost(self):
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

    def _write(self, call_):
        pending = _Pending(call_)
        self._write_pending(pending)
        return pending

    def _write_pending(self, pending):
        pending.tag = self._tags.take()
        self._by_tag[pending.tag] = pending
        try:
            self._sock.sendall(pending.call.encode(pending.tag))
        except OSError:
            raise ConnectionLost("send failed") from None

    def _send(self, call_):
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

    def _await(self, pending, timeout=None, reconnect=True):
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

    def _dispatch(self, data):
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

    def request(self, call_, timeout=None):
        """The result of one Call; raises its DoozerError."""
        pending = self._await(self._send(call_), timeout)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def exchange(self, call_, timeout=None):
        """The server's raw Response to one Call, error codes included
        (for tests and tools that inspect the wire); raises ConnectionLost
        or WaitTimeout as ``request`` does."""
        pending = self._await(self._send(call_), timeout)
        if pending.response is None:
            raise pending.error
        return pending.response

    def many(self, calls):
        """Outcomes (result or exception) of calls sent pipelined."""
        pendings = [self._send(c) for c in calls]
        for pending in pendings:
            self._await(pending)
        return [p.error if p.error is not None else p.result for p in pendings]

    # -- verbs -------------------------------------------------------------------

    def wait(self, glob, rev, timeout=None):
        """First Event matching ``glob`` at or after ``rev``; WaitTimeout after ``timeout``."""
        pending = self._send(call("WAIT", path=glob, rev=rev))
        try:
            self._await(pending, timeout)
        except WaitTimeout:
            pending.abandoned = True
            raise
        if pending.error is not None:
            raise pending.error
        return pending.result


    # -- helpers -----------------------------------------------------------------

    def run_plan(self, plan):
        return plans.drive_blocking(plan, self.many)

    def watch(self, glob, rev=None, timeout=None):
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

    def __init__(self, client, glob, rev, timeout=None):
        self.client = client
        self.glob = glob
        self.next_rev = rev
        self.timeout = timeout
        self._pending = None

    def __iter__(self):
        return self

    def __next__(self):
        return self.next(self.timeout)

    def next(self, timeout=None):
        if self._pending is None:
            self._pending = self.client._send(call("WAIT", path=self.glob, rev=self.next_rev))
        pending = self.client._await(self._pending, timeout)
        self._pending = None
        if pending.error is not None:
            raise pending.error
        event = pending.result
        self.next_rev = event.rev + 1
        return event

    def close(self):
        """Stop; the outstanding WAIT's late answer is dropped."""
        if self._pending is not None:
            self._pending.abandoned = True
            self._pending = None


def _describe(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error)


def connect(target, secret=None, **options):
    """A connected BlockingClient for a URI or address list."""
    return BlockingClient(target, secret=secret, **options).connect()
