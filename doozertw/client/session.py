"""Sessions: a lease kept alive in the background, and ephemeral files on it.

A session grants one lease of ``ttl`` seconds and keeps it alive (a
keep-alive every ``ttl / 3`` seconds) across reconnects and failover (the
clients re-send a keep-alive in flight on the next connection; a failover
extends every lease, so none expires early). Listeners hear its states,
modelled on kazoo's:

- ``CONNECTED``: the last keep-alive succeeded.
- ``SUSPENDED``: keep-alives are failing (or unanswered for longer than a
  period) but the lease may still be alive: less than ``ttl`` seconds have
  passed since the last successful keep-alive was *sent*. Counting from the
  send (not the answer) is conservative: the server restarted the countdown
  at some moment after that.
- ``LOST``: the lease is gone: a keep-alive answered NOENT, or ``ttl``
  seconds passed without a successful one. A lost session stops; it never
  makes a new lease by itself (its ephemeral files are gone, and whatever
  they meant, locks included, must be re-established by the caller).
- ``CLOSED``: ``close()`` was called (the lease is revoked).

``set_ephemeral(path, value)`` writes a file under the session's lease
(clobbering); ``create_ephemeral(path, value)`` creates one (REV_MISMATCH if
it exists). Both raise SessionLost once the session is LOST or CLOSED.

Two flavours share ``SessionCore`` (pure: the state machine, fed times):

- ``Session`` (Twisted): keep-alives go through the given DoozerClient on
  an injected reactor (any IReactorTime: tests use task.Clock). Everything
  runs on the reactor thread; results are Deferreds.
- ``BlockingSession``: keep-alives run in a daemon thread on a connection
  of their own (a second BlockingClient to the same URI), because a
  BlockingClient is not thread-safe and the caller's thread may be blocked
  in a WAIT for minutes. The caller's client is only ever used from the
  caller's thread (for ephemeral writes and recipes); the keep-alive
  thread only touches its own client (and ``close`` uses that client only
  after the thread has stopped). The state fields shared by the two
  threads are guarded by one lock; listeners are called from the
  keep-alive thread (and from ``close``), outside the lock.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozertw.client.blocking import BlockingClient
from doozertw.client.core import ClientError, ConnectionLost, LeaseInfo, WaitTimeout, call
from doozertw.client.twisted_client import DoozerClient
from doozertw.errors import DoozerError, ErrCode


class SessionState(enum.Enum):
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"
    CLOSED = "closed"


Listener = Callable[[SessionState], object]


class SessionLost(ClientError):
    """The session's lease is gone (or the session was closed)."""

    def __init__(self, detail: str = "session lost") -> None:
        super().__init__(detail)


class SessionCore:
    """The session state machine, pure: every method takes the time ``now``
    (monotonic seconds) and returns the new state if it changed, else None."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.lease = 0
        self.state: SessionState | None = None
        self.last_ok = 0.0      # send time of the last successful keep-alive (or grant)
        self.why = ""

    @property
    def period(self) -> float:
        """Seconds between keep-alives."""
        return self.ttl / 3.0

    @property
    def over(self) -> bool:
        return self.state in (SessionState.LOST, SessionState.CLOSED)

    def _to(self, state: SessionState, why: str = "") -> SessionState | None:
        if self.state == state or (self.over and state != SessionState.CLOSED):
            return None
        self.state = state
        if why:
            self.why = why
        return state

    def granted(self, lease: int, sent: float, ttl: float = 0.0) -> SessionState | None:
        """The lease was granted (``ttl``: the server's, which may be longer
        than asked: a cluster has a minimum; 0 keeps the one asked for)."""
        self.lease = lease
        if ttl > 0:
            self.ttl = float(ttl)
        self.last_ok = sent
        return self._to(SessionState.CONNECTED)

    def kept(self, sent: float, now: float) -> SessionState | None:
        """A keep-alive sent at ``sent`` succeeded (answered at ``now``)."""
        if self.over:
            return None
        if now - max(self.last_ok, sent) >= self.ttl:
            return self._to(SessionState.LOST, "keep-alive answered after the ttl")
        self.last_ok = max(self.last_ok, sent)
        return self._to(SessionState.CONNECTED)

    def failed(self, error: BaseException, now: float) -> SessionState | None:
        """A keep-alive failed with ``error``."""
        if isinstance(error, DoozerError) and error.code == ErrCode.NOENT:
            return self._to(SessionState.LOST, f"lease {self.lease} is gone")
        return self.check(now) or self._to(SessionState.SUSPENDED, str(error))

    def check(self, now: float, outstanding_since: float | None = None) -> SessionState | None:
        """The clock moved: LOST once ttl passed since the last success;
        SUSPENDED if a keep-alive has been unanswered for over a period."""
        if self.over:
            return None
        if now - self.last_ok >= self.ttl:
            return self._to(SessionState.LOST, f"no keep-alive for {self.ttl}s")
        if outstanding_since is not None and now - outstanding_since > self.period:
            return self._to(SessionState.SUSPENDED, "keep-alive unanswered")
        return None

    def closed(self) -> SessionState | None:
        return self._to(SessionState.CLOSED)

    def ensure_alive(self) -> None:
        """Raise SessionLost unless the lease may still be alive."""
        if self.state is None:
            raise SessionLost("session not started")
        if self.over:
            raise SessionLost(f"session {self.state.value}: {self.why}".rstrip(": "))


class _Names:
    """Unique names for files this session creates: ``<lease>-<n>``."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def unique_name(self, lease: int) -> str:
        return f"{lease}-{next(self._counter)}"


def lease_of_name(name: str) -> int:
    """The lease id in a name made by ``unique_name`` (0 if it is not one)."""
    head = name.rsplit("/", 1)[-1].split("-", 1)[0]
    return int(head) if head.isdigit() and len(head) < 20 else 0


class Session(_Names):
    """A lease kept alive on the Twisted client; see the module docstring.

    ``start()`` fires with the session once its lease is granted.
    """

    log = Logger()
    blocking = False

    def __init__(self, client: DoozerClient, ttl: int = 10, reactor: Any = None) -> None:
        super().__init__()
        self.client = client
        self.reactor: Any = reactor if reactor is not None else client.reactor
        self.ttl = ttl
        self.core = SessionCore(float(ttl))
        self._listeners: list[Listener] = []
        self._timer: Any = None
        self._outstanding: tuple[float, defer.Deferred[LeaseInfo]] | None = None
        client.add_listener(self._client_state)

    @property
    def lease(self) -> int:
        return self.core.lease

    @property
    def state(self) -> SessionState | None:
        return self.core.state

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; one not added is ignored."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _tell(self, state: SessionState | None) -> None:
        if state is None:
            return
        self.log.info("session {lease}: {state}", lease=self.lease, state=state.value)
        if self.core.over:
            self._stop_timer()
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                self.log.failure("session listener failed")

    def start(self) -> defer.Deferred[Session]:
        """Grant the lease and start keeping it alive; fires with self."""
        sent = self.reactor.seconds()

        def granted(info: LeaseInfo) -> Session:
            self._tell(self.core.granted(info.id, sent, info.ttl))
            self.ttl = info.ttl or self.ttl
            self._schedule()
            return self

        return self.client.grant_lease(self.ttl).addCallback(granted)

    def ensure_alive(self) -> None:
        self.core.ensure_alive()

    # -- keep-alives ---------------------------------------------------------

    def _schedule(self) -> None:
        if not self.core.over:
            self._timer = self.reactor.callLater(self.core.period, self._tick)

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        outstanding, self._outstanding = self._outstanding, None
        if outstanding is not None:
            outstanding[1].cancel()

    def _tick(self) -> None:
        self._timer = None
        now = self.reactor.seconds()
        since = self._outstanding[0] if self._outstanding is not None else None
        self._tell(self.core.check(now, since))
        if self.core.over:
            return
        if self._outstanding is None:
            self.keepalive_now()
        self._schedule()

    def keepalive_now(self) -> None:
        """Send a keep-alive now (unless one is in flight)."""
        if self.core.over or self._outstanding is not None:
            return
        sent = self.reactor.seconds()
        d = self.client.keepalive(self.lease)
        self._outstanding = (sent, d)
        d.addCallbacks(self._kept, self._failed, callbackArgs=(d, sent), errbackArgs=(d,))

    def _kept(self, info: LeaseInfo, d: defer.Deferred[LeaseInfo], sent: float) -> None:
        if self._outstanding is not None and self._outstanding[1] is d:
            self._outstanding = None
        self._tell(self.core.kept(sent, self.reactor.seconds()))

    def _failed(self, failure: Failure, d: defer.Deferred[LeaseInfo]) -> None:
        if failure.check(defer.CancelledError):  # type: ignore[no-untyped-call]
            return
        if self._outstanding is not None and self._outstanding[1] is d:
            self._outstanding = None
        self._tell(self.core.failed(failure.value, self.reactor.seconds()))

    def _client_state(self, state: Any) -> None:
        if self.core.state is None or self.core.over:
            return
        if state.value == "connected":
            self.keepalive_now()
        elif state.value in ("suspended", "lost"):
            self._tell(self.core.check(self.reactor.seconds())
                       or self.core._to(SessionState.SUSPENDED, f"client {state.value}"))

    # -- ephemeral files -------------------------------------------------------

    def set_ephemeral(self, path: str, value: bytes | str) -> defer.Deferred[int]:
        """Deferred revision of writing ``path`` (clobbering) under the lease."""
        return self._write(path, -1, value)

    def create_ephemeral(self, path: str, value: bytes | str) -> defer.Deferred[int]:
        """Deferred revision of creating ``path`` under the lease (REV_MISMATCH
        if it exists)."""
        return self._write(path, 0, value)

    def _write(self, path: str, rev: int, value: bytes | str) -> defer.Deferred[int]:
        try:
            self.core.ensure_alive()
        except SessionLost as e:
            return defer.fail(e)
        return self.client.set(path, rev, value, lease=self.lease)

    def close(self) -> defer.Deferred[None]:
        """Stop keeping the lease alive and revoke it (deleting its files)."""
        lease, was_over = self.lease, self.core.over
        self._tell(self.core.closed())
        self._stop_timer()
        self.client.remove_listener(self._client_state)
        if was_over or not lease:
            return defer.succeed(None)
        d = self.client.revoke_lease(lease)
        d.addErrback(_ignore_noent)
        return d.addCallback(lambda _: None)


def _ignore_noent(failure: Failure) -> None:
    error = failure.value
    if isinstance(error, DoozerError) and error.code == ErrCode.NOENT:
        return None
    failure.raiseException()


class BlockingSession(_Names):
    """A lease kept alive by a background thread; see the module docstring.

    ``client`` is the caller's BlockingClient (used only by the caller's
    thread); the keep-alive thread opens its own connection to the same
    URI. Usable as a context manager (``close`` on exit).
    """

    blocking = True

    def __init__(self, client: BlockingClient, ttl: int = 10,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.client = client
        self.ttl = ttl
        self.core = SessionCore(float(ttl))
        self._now = monotonic
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listeners: list[Listener] = []
        self._keeper = BlockingClient(
            client.uri.addresses, secret=client.uri.secret, tls=client.uri.tls,
            suspend_timeout=max(0.5, ttl / 3.0), retry_delay=0.05,
            max_retry_delay=max(0.1, ttl / 6.0))
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> int:
        return self.core.lease

    @property
    def state(self) -> SessionState | None:
        with self._lock:
            return self.core.state

    def add_listener(self, listener: Listener) -> None:
        """``listener(state)`` is called from the keep-alive thread."""
        self._listeners.append(listener)

    def _tell(self, state: SessionState | None) -> None:
        if state is None:
            return
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:  # a listener's bug must not stop the keep-alives
                pass

    def start(self) -> BlockingSession:
        """Grant the lease and start the keep-alive thread; returns self."""
        sent = self._now()
        info = self._keeper.grant_lease(self.ttl)
        with self._lock:
            state = self.core.granted(info.id, sent, info.ttl)
            self.ttl = info.ttl or self.ttl
        self._tell(state)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"doozer-session-{info.id}")
        self._thread.start()
        return self

    def __enter__(self) -> BlockingSession:
        return self if self.core.state is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_alive(self) -> None:
        with self._lock:
            if not self.core.over:
                state = self.core.check(self._now())
            else:
                state = None
        self._tell(state)
        with self._lock:
            self.core.ensure_alive()

    def _run(self) -> None:
        period = self.core.period
        next_at = self._now() + period
        # each keep-alive is due a period after the previous one was sent,
        # however long that one took to answer or time out
        while not self._stopping.wait(max(0.0, next_at - self._now())):
            sent = self._now()
            next_at = sent + period
            try:
                self._keeper.request(call("LEASE_KEEPALIVE", lease=self.lease), timeout=period)
                with self._lock:
                    state = self.core.kept(sent, self._now())
            except (DoozerError, OSError) as e:
                if self._stopping.is_set():
                    return
                error = e if isinstance(e, DoozerError) else ConnectionLost(str(e))
                with self._lock:
                    state = self.core.failed(error, self._now())
            self._tell(state)
            with self._lock:
                if self.core.over:
                    break

    def set_ephemeral(self, path: str, value: bytes | str) -> int:
        """Revision of writing ``path`` (clobbering) under the lease."""
        self.ensure_alive()
        return self.client.set(path, -1, value, lease=self.lease)

    def create_ephemeral(self, path: str, value: bytes | str) -> int:
        """Revision of creating ``path`` under the lease (REV_MISMATCH if it exists)."""
        self.ensure_alive()
        return self.client.set(path, 0, value, lease=self.lease)

    def close(self) -> None:
        """Stop the keep-alive thread and revoke the lease (on the session's
        own connection once the thread has stopped, else on the caller's
        client). Unreachable servers are not an error: the lease then
        expires by itself."""
        with self._lock:
            was_over = self.core.over
            state = self.core.closed()
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0 * self.ttl)
        revoker = self.client if thread is not None and thread.is_alive() else self._keeper
        try:
            if not was_over and self.lease:
                revoker.revoke_lease(self.lease)
        except DoozerError as e:
            if e.code != ErrCode.NOENT and not isinstance(e, (ConnectionLost, WaitTimeout)):
                raise
        finally:
            if revoker is self._keeper:
                self._keeper.close()
            self._tell(state)
