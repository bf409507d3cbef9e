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

from collections import deque

from twisted.internet import defer
from twisted.logger import Logger

from doozertw.client.core import ConnectionLost


class Watch:
    """Every change matching ``glob`` from ``rev`` (None: after the current one)."""

    log = Logger()

    def __init__(self, client, glob, rev=None, callback=None, timeout=None):
        self.client = client
        self.glob = glob
        self.next_rev = rev
        self.callback = callback
        self.timeout = timeout
        self.done = defer.Deferred()
        self.error = None
        self._events = deque()
        self._readers = deque()
        self._wait = None
        self._stopped = False

    @property
    def active(self):
        return not self._stopped

    def start(self):
        if self.next_rev is None:
            self._wait = self.client.rev()
            self._wait.addCallbacks(self._pinned, self._failed)
        else:
            self._ask()
        return self

    def _pinned(self, current):
        self._wait = None
        self.next_rev = current + 1
        self._ask()

    def _ask(self):
        if self._stopped:
            return
        self._wait = self.client.wait(self.glob, self.next_rev, self.timeout)
        self._wait.addCallbacks(self._event, self._failed)

    def _event(self, event):
        self._wait = None
        if self._stopped:
            return
        self.next_rev = event.rev + 1
        self._deliver(event)
        self._ask()

    def _deliver(self, event):
        if self.callback is not None:
            try:
                self.callback(event)
            except Exception:
                self.log.failure("watch callback failed for {glob}", glob=self.glob)
        elif self._readers:
            self._readers.popleft().callback(event)
        else:
            self._events.append(event)

    def _failed(self, failure):
        self._wait = None
        if failure.check(defer.CancelledError) or self._stopped:
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

    def stop(self):
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

    def next(self):
        """Deferred next queued event; fails with the watch's error."""
        if self._events:
            return defer.succeed(self._events.popleft())
        if self.error is not None:
            return defer.fail(self.error)
        if self._stopped:
            return defer.fail(StopAsyncIteration())
        d = defer.Deferred()
        self._readers.append(d)
        return d

    def __aiter__(self):
        return self

    def __anext__(self):
        return self.next()
