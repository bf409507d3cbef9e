"""A watch on the Twisted client: every change matching a glob, in order.

Doozer's WAIT answers one event; a Watch asks again from that event's
revision + 1, so it sees every change exactly once. After a reconnect the
client re-sends the outstanding WAIT with the same revision, so the watch
resumes from the last revision it delivered + 1: nothing is lost or
repeated.

A watch never ends silently. It stops only by ``stop()`` (``done`` fires
None) or with an error (``done`` fails, and the async iterator raises):
TOO_LATE when the server's history no longer reaches back to the next
revision, WaitTimeout when ``timeout`` seconds pass with no change,
ConnectionLost when the client gave up reconnecting.

Deliveries go to ``callback(event)`` if one was given; otherwise events are
queued for ``async for event in watch`` or ``watch.next()`` (a Deferred).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozertw.client.core import ConnectionLost
from doozertw.store import Event


class WatchSource(Protocol):
    """What a Watch needs of its client (a DoozerClient)."""

    def rev(self) -> defer.Deferred[int]: ...

    def wait(self, glob: str, rev: int,
             timeout: float | None = None) -> defer.Deferred[Event]: ...


class Watch:
    """Every change matching ``glob`` from ``rev`` (None: after the current one)."""

    log = Logger()

    def __init__(self, client: WatchSource, glob: str, rev: int | None = None,
                 callback: Callable[[Event], object] | None = None,
                 timeout: float | None = None) -> None:
        self.client = client
        self.glob = glob
        self.next_rev = rev
        self.callback = callback
        self.timeout = timeout
        self.done: defer.Deferred[None] = defer.Deferred()
        self.error: BaseException | None = None
        self._events: deque[Event] = deque()
        self._readers: deque[defer.Deferred[Event]] = deque()
        self._wait: defer.Deferred[int] | defer.Deferred[Event] | None = None
        self._stopped = False

    @property
    def active(self) -> bool:
        return not self._stopped

    def start(self) -> Watch:
        if self.next_rev is None:
            self._wait = self.client.rev()
            self._wait.addCallbacks(self._pinned, self._failed)
        else:
            self._ask()
        return self

    def _pinned(self, current: int) -> None:
        self._wait = None
        self.next_rev = current + 1
        self._ask()

    def _ask(self) -> None:
        if self._stopped:
            return
        self._wait = self.client.wait(self.glob, cast(int, self.next_rev), self.timeout)
        self._wait.addCallbacks(self._event, self._failed)

    def _event(self, event: Event) -> None:
        self._wait = None
        if self._stopped:
            return
        self.next_rev = event.rev + 1
        self._deliver(event)
        self._ask()

    def _deliver(self, event: Event) -> None:
        if self.callback is not None:
            try:
                self.callback(event)
            except Exception:
                self.log.failure("watch callback failed for {glob}", glob=self.glob)
        elif self._readers:
            self._readers.popleft().callback(event)
        else:
            self._events.append(event)

    def _failed(self, failure: Failure) -> None:
        self._wait = None
        if failure.check(defer.CancelledError) or self._stopped:  # type: ignore[no-untyped-call]
            return None
        self._stopped = True
        self.error = failure.value
        self.log.warn("watch {glob} failed at rev {rev}: {why}", glob=self.glob,
                      rev=self.next_rev, why=failure.getErrorMessage())
        readers, self._readers = self._readers, deque()
        for reader in readers:
            reader.errback(failure.value)
        self.done.errback(failure)
        return None

    def stop(self) -> None:
        """Stop watching; ``done`` fires None; pending ``next()`` calls fail."""
        if self._stopped:
            return
        self._stopped = True
        wait, self._wait = self._wait, None
        if wait is not None:
            wait.cancel()
        readers, self._readers = self._readers, deque()
        for reader in readers:
            reader.errback(ConnectionLost("watch stopped"))
        self.done.callback(None)

    def next(self) -> defer.Deferred[Event]:
        """Deferred next queued event; fails with the watch's error."""
        if self._events:
            return defer.succeed(self._events.popleft())
        if self.error is not None:
            return defer.fail(self.error)
        if self._stopped:
            return defer.fail(StopAsyncIteration())
        d: defer.Deferred[Event] = defer.Deferred()
        self._readers.append(d)
        return d

    def __aiter__(self) -> Watch:
        return self

    def __anext__(self) -> defer.Deferred[Event]:
        return self.next()
