"""Locks on a session: Lock (fair, fenced), RWLock, Semaphore.

All three queue contenders by creation revision under the lock's directory
(``base.join_queue``); a contender's file is attached to its session's
lease, so a holder whose session ends (closed, revoked, expired) frees the
lock to the next contender.

- ``Lock``: exclusive and fair (first come, first served); each contender
  watches only its predecessor, so a release wakes exactly one waiter.
  ``acquire`` answers the fencing token (see docs/recipes.md).
- ``RWLock``: ``read_lock()``/``write_lock()``; readers share, writers
  exclude everyone; in arrival order (a reader waits only for the writer
  before it, a writer for whoever is just before it).
- ``Semaphore(n)``: up to ``n`` holders. A waiter must notice any lower
  contender leaving, so waiters watch the whole directory (a release wakes
  every waiter; each lists once and at most the next one proceeds).
"""

from __future__ import annotations

from typing import Any

from doozertw.client.recipes._steps import Recipe
from doozertw.client.recipes.base import (
    Blocker, Flavoured, delete_quietly, join_queue, listing, predecessor)
from doozertw.store import Event
from doozertw.store.mutation import Compare


class _Held:
    """One hold: our file's path and revision, and the fencing token."""

    def __init__(self, path: str, rev: int, token: int) -> None:
        self.path = path
        self.rev = rev
        self.token = token


class _QueueLock(Flavoured):
    """A lock made of a contender queue under ``path`` with one blocker rule."""

    suffix = ""

    def __init__(self, session: Any, path: str, lock_delay: float = 0.0,
                 value: bytes | str = b"") -> None:
        super().__init__(session)
        self._session()
        self.path = path.rstrip("/")
        self.lock_delay = lock_delay
        self.value = value.encode() if isinstance(value, str) else value
        self.held: _Held | None = None

    def _blocker(self, entries: list[Event], mine: int) -> str | None:
        return predecessor(entries, mine)

    @property
    def token(self) -> int | None:
        """The fencing token of the current hold (None when not held)."""
        return self.held.token if self.held is not None else None

    @property
    def is_acquired(self) -> bool:
        return self.held is not None

    def fence(self) -> Compare:
        """A Compare that holds exactly while this hold lasts: our queue
        file at its (creation) revision. Put it among a TXN's compares to
        write only while we hold the lock; a hold lost meanwhile (released,
        or the session's lease ended) fails the TXN. Answered at once, with
        no request (RuntimeError when not held)."""
        if self.held is None:
            raise RuntimeError(f"{self.path} is not held by this object")
        return Compare(self.held.path, rev=self.held.rev)

    def acquire(self, timeout: float | None = None) -> Any:
        """Wait for the lock: its fencing token. LockTimeout after
        ``timeout`` seconds; SessionLost if the session ends meanwhile."""
        return self._run(self._acquire(timeout, self._blocker, self.suffix))

    def _acquire(self, timeout: float | None, blocker: Blocker,
                 suffix: str) -> Recipe[int]:
        if self.held is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        path, rev, token = yield from join_queue(self._session(), self.path, suffix,
                                                 self.value, blocker, timeout, self.lock_delay)
        self.held = _Held(path, rev, token)
        return token

    def release(self) -> Any:
        """Give the lock up (no-op if not held)."""
        return self._run(self._release())

    def _release(self) -> Recipe[None]:
        held, self.held = self.held, None
        if held is not None:
            yield from delete_quietly(held.path, held.rev)

    def contenders(self) -> Any:
        """Values of the files in the queue, holder first."""
        return self._run(self._contenders())

    def _contenders(self) -> Recipe[list[bytes]]:
        _, entries = yield from listing(self.path)
        return [e.value for e in entries]

    def __enter__(self) -> _QueueLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Lock(_QueueLock):
    """A fair exclusive lock with fencing tokens and an optional lock_delay."""


class RWLock(Flavoured):
    """Readers-writer lock: ``read_lock()`` and ``write_lock()`` are locks."""

    def __init__(self, session: Any, path: str, lock_delay: float = 0.0) -> None:
        super().__init__(session)
        self.path = path.rstrip("/")
        self.read_lock = _ReadLock(session, self.path, lock_delay)
        self.write_lock = _WriteLock(session, self.path, lock_delay)


def _kind(event: Event) -> str:
    return event.path.rsplit("-", 1)[-1]


class _ReadLock(_QueueLock):
    suffix = "-r"

    def _blocker(self, entries: list[Event], mine: int) -> str | None:
        writers = [e for e in entries[:mine] if _kind(e) == "w"]
        return writers[-1].path if writers else None


class _WriteLock(_QueueLock):
    suffix = "-w"


class Semaphore(_QueueLock):
    """Up to ``max_leases`` holders at once, admitted in arrival order."""

    def __init__(self, session: Any, path: str, max_leases: int,
                 lock_delay: float = 0.0, value: bytes | str = b"") -> None:
        if max_leases < 1:
            raise ValueError("a semaphore admits at least one holder")
        super().__init__(session, path, lock_delay, value)
        self.max_leases = max_leases

    def _blocker(self, entries: list[Event], mine: int) -> str | None:
        return None if mine < self.max_leases else self.path + "/*"

    def holders(self) -> Any:
        """Values of the current holders' files."""
        return self._run(self._holders())

    def _holders(self) -> Recipe[list[bytes]]:
        values = yield from self._contenders()
        return values[:self.max_leases]
