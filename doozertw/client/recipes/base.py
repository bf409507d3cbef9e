"""What every recipe shares: its flavour, listings, waits, and the contender queue.

A recipe object is made on a session (``Session`` or ``BlockingSession``)
or, for recipes that need no lease, on a client (``DoozerClient`` or
``BlockingClient``) or a session. Its flavour follows: on the Twisted side
every method answers a Deferred, on the blocking side the result itself.
Both run the same generator (``_steps``).

The contender queue (``join_queue`` / ``wait_turn``) is the heart of the
locks and the election: each contender creates a file under the recipe's
directory with a unique name and rev 0 (create), attached to its session's
lease. Files are never rewritten, so a file's revision is its creation
revision, and revisions order the contenders. A new file always gets a
higher revision than every file already there, so no file can ever appear
*before* a waiting contender: once first, first until deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from doozertw.client import plans
from doozertw.client.blocking import BlockingClient
from doozertw.client.core import ClientError, ConnectionLost, WaitTimeout, call
from doozertw.client.recipes._steps import NOW, Recipe, Sleep, Wait, run_blocking, run_twisted
from doozertw.client.session import SessionLost, lease_of_name
from doozertw.errors import DoozerError, ErrCode
from doozertw.store import Event


class LockTimeout(ClientError):
    """The lock (or turn, or barrier) was not obtained within the timeout."""

    def __init__(self, detail: str = "timed out") -> None:
        super().__init__(detail)


class SessionLike(Protocol):
    """What recipes need of a session (Session or BlockingSession)."""

    client: Any
    ttl: int
    blocking: bool

    @property
    def lease(self) -> int: ...

    def ensure_alive(self) -> None: ...

    def unique_name(self, lease: int) -> str: ...


class Flavoured:
    """Base of every recipe: runs a recipe generator in the right flavour."""

    def __init__(self, on: Any) -> None:
        self.session: SessionLike | None = on if hasattr(on, "ensure_alive") else None
        self.client: Any = on.client if self.session is not None else on
        self.blocking = isinstance(self.client, BlockingClient)

    def _run(self, recipe: Recipe[Any]) -> Any:
        if self.blocking:
            return run_blocking(self.client, recipe)
        return run_twisted(self.client, self.client.reactor, recipe, self.session)

    def _session(self) -> SessionLike:
        if self.session is None:
            raise TypeError(f"{type(self).__name__} needs a session for this, not a client")
        return self.session


def listing(directory: str, at: int | None = None) -> Recipe[tuple[int, list[Event]]]:
    """(rev, files directly under ``directory`` at rev, by creation revision);
    rev is ``at`` if given, else the current revision."""
    rev = yield from plans.pin(at)
    events = yield from plans.walk_all(directory.rstrip("/") + "/*", rev)
    return rev, sorted(events, key=lambda e: e.rev)


def wait_change(glob: str, after: int, timeout: float | None) -> Recipe[Event | None]:
    """The first change matching ``glob`` after revision ``after``; None on
    TOO_LATE (the history moved on: the caller lists again)."""
    try:
        event: Event = yield Wait(glob, after + 1, timeout)
    except DoozerError as e:
        if e.code != ErrCode.TOO_LATE or isinstance(e, ClientError):
            raise
        return None
    return event


def deadline_left(deadline: float | None, poll: float | None) -> Recipe[float | None]:
    """Seconds to wait next: ``poll`` (None: no limit), or less before
    ``deadline``; LockTimeout after it."""
    if deadline is None:
        return poll
    now: float = yield NOW
    if now >= deadline:
        raise LockTimeout()
    return deadline - now if poll is None else min(poll, deadline - now)


def deadline_of(timeout: float | None) -> Recipe[float | None]:
    if timeout is None:
        return None
    now: float = yield NOW
    return now + float(timeout)


def create_unique(path: str, value: bytes, lease: int) -> Recipe[int]:
    """Create ``path`` (a name no one else uses) under ``lease``; its revision.

    If the answer is lost the create may have happened: since the name is
    ours alone, a file there now is ours. NOENT (no such lease): SessionLost.
    """
    try:
        rev: int = yield call("SET", path=path, rev=0, value=value, lease=lease or None)
        return rev
    except DoozerError as e:
        if lease and e.code == ErrCode.NOENT and not isinstance(e, ClientError):
            raise SessionLost(f"lease {lease} is gone") from None
        if not isinstance(e, ConnectionLost):
            raise
        _, rev = yield call("GET", path=path)
        if rev <= 0:
            raise
        return rev


def delete_quietly(path: str, rev: int) -> Recipe[None]:
    """Delete our file; it may be gone already (lease ended): that is fine."""
    try:
        yield call("DEL", path=path, rev=rev)
    except DoozerError as e:
        if isinstance(e, ConnectionLost) or e.code not in (ErrCode.NOENT, ErrCode.REV_MISMATCH):
            raise


Blocker = Callable[[list[Event], int], "str | None"]
"""``blocker(entries, index_of_mine)``: the path or glob to wait on, or None
when the contender's turn has come."""


def predecessor(entries: list[Event], mine: int) -> str | None:
    """The exclusive lock's blocker: the next-lower entry (no herd)."""
    return entries[mine - 1].path if mine > 0 else None


def join_queue(session: SessionLike, directory: str, suffix: str, value: bytes,
               blocker: Blocker, timeout: float | None,
               lock_delay: float) -> Recipe[tuple[str, int, int]]:
    """Enter the contender queue under ``directory`` and wait for our turn:
    (our path, our file's revision, the fencing token). On failure,
    timeout or cancellation our file is deleted again."""
    session.ensure_alive()
    deadline = yield from deadline_of(timeout)
    path = f"{directory.rstrip('/')}/{session.unique_name(session.lease)}{suffix}"
    mine = yield from create_unique(path, value, session.lease)
    try:
        token = yield from wait_turn(session, directory, path, blocker, deadline, lock_delay)
    except Exception:
        yield from delete_quietly(path, mine)
        raise
    return path, mine, token


def wait_turn(session: SessionLike, directory: str, path: str, blocker: Blocker,
              deadline: float | None, lock_delay: float) -> Recipe[int]:
    """Wait until ``blocker`` says it is our turn; the fencing token: the
    revision of the listing that showed it (see docs/recipes.md for why it
    grows from holder to holder).

    ``lock_delay``: if our turn came because the file we waited on vanished
    and its lease no longer exists (expired, or revoked), wait that long
    first (Chubby's lock-delay). Raises SessionLost once our file is gone.
    """
    # A blocking waiter wakes every ttl to check its session (the Twisted
    # driver interrupts the wait when the session is lost instead).
    poll = max(1.0, float(session.ttl)) if session.blocking else None
    vanished = 0
    while True:
        session.ensure_alive()
        rev, entries = yield from listing(directory)
        index = next((i for i, e in enumerate(entries) if e.path == path), None)
        if index is None:
            raise SessionLost(f"{path} is gone: the session's lease ended")
        waiting_on = blocker(entries, index)
        if waiting_on is None:
            if vanished and lock_delay > 0 and (yield from lease_gone(vanished)):
                vanished = 0
                yield Sleep(lock_delay)
                continue        # list again: the token is taken after the delay
            return rev
        while True:
            left = yield from deadline_left(deadline, poll)
            try:
                event = yield from wait_change(waiting_on, rev, left)
            except WaitTimeout:
                session.ensure_alive()
                continue
            break
        vanished = lease_of_name(event.path) if event is not None and "*" not in waiting_on else 0


def lease_gone(lease: int) -> Recipe[bool]:
    """True if lease ``lease`` no longer exists."""
    try:
        yield call("LEASE_TTL", lease=lease)
    except DoozerError as e:
        if e.code == ErrCode.NOENT and not isinstance(e, ClientError):
            return True
        raise
    return False
