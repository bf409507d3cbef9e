"""Persisters: how the driver makes a Ready durable without blocking.

A persister takes the storage calls of the Raft driver (``save(ready)``,
``compact(snapshot)``) and returns a Deferred that fires, on the reactor
thread, once the call has returned (for a disk storage: once fsynced).
Calls complete in the order they were made.

- ``InlinePersister`` calls the storage at once (MemoryStorage, tests).
- ``ThreadPersister`` runs every call on one writer thread, so an fsync
  never blocks the reactor: reads, watches and heartbeats keep flowing
  while the disk works. Each Ready is one storage call, hence one fsync
  for all the entries and hard state the node produced meanwhile (group
  commit).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Protocol

from twisted.internet import defer
from twisted.python.failure import Failure

from doozertw.persist import allocator


class Persister(Protocol):
    def save(self, ready: Any) -> defer.Deferred: ...

    def compact(self, snapshot: Any) -> defer.Deferred: ...

    def close(self) -> None: ...


class InlinePersister:
    """Calls the storage synchronously; the Deferreds have already fired."""

    def __init__(self, storage):
        self.storage = storage

    def save(self, ready) -> defer.Deferred:
        return defer.maybeDeferred(self.storage.save, ready)

    def compact(self, snapshot) -> defer.Deferred:
        return defer.maybeDeferred(self.storage.compact, snapshot)

    def close(self) -> None:
        close = getattr(self.storage, "close", None)
        if close is not None:
            close()


_STOP = object()


class ThreadPersister:
    """Runs storage calls on one daemon writer thread, in order; results
    come back through ``reactor.callFromThread``."""

    def __init__(self, storage, reactor, name="doozer-wal"):
        self.storage = storage
        self.reactor = reactor
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def save(self, ready) -> defer.Deferred:
        if ready.snapshot is not None:
            return self._submit(self._save_and_release, ready)
        return self._submit(self.storage.save, ready)

    def compact(self, snapshot) -> defer.Deferred:
        """``storage.compact``, then the freed heap goes back to the OS
        (doozertw.persist.allocator: the snapshot file's buffers are gone
        by then); likewise after saving a received snapshot."""
        return self._submit(self._compact_and_release, snapshot)

    def _compact_and_release(self, snapshot):
        result = self.storage.compact(snapshot)
        allocator.release()
        return result

    def _save_and_release(self, ready):
        result = self.storage.save(ready)
        allocator.release()
        return result

    def _submit(self, fn: Callable, arg) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._queue.put((fn, arg, d))
        return d

    def _run(self):
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, arg, d = item
            try:
                result = fn(arg)
            except BaseException:
                outcome = Failure()
                self.reactor.callFromThread(d.errback, outcome)
            else:
                self.reactor.callFromThread(d.callback, result)

    def close(self) -> None:
        """Finish queued calls, stop the thread, close the storage."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        close = getattr(self.storage, "close", None)
        if close is not None:
            close()


__all__ = ["InlinePersister", "Persister", "ThreadPersister"]
