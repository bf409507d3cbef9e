"""Leader election on a session.

``campaign(value)`` joins the candidates under the election's directory (a
fair Lock whose file holds ``value``) and answers, once this candidate
leads, its fencing token (it grows from leader to leader). ``resign()``
steps down (the next candidate leads). A leader whose session ends steps
down with it. ``fence()`` answers, while leading, the Compare that holds
exactly as long as this leadership does (the candidate's file at its
revision): a TXN guarded by it writes nothing once the leader is deposed.
``leader()`` answers the current leader's value (None if there is none);
``observe(callback)`` calls ``callback(value)`` with the leader's value
now and at every change of leader (None: no leader) until the callback
returns False. On the Twisted side ``observe`` answers a Deferred that
fires with None when it stops, or when it is cancelled (cancelling is how
to stop it from outside); on the blocking side it returns then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError

from doozertw.client.recipes._steps import Recipe
from doozertw.client.recipes.base import Flavoured, listing, wait_change
from doozertw.client.recipes.lock import Lock
from doozertw.store.mutation import Compare


class Election(Flavoured):
    """See the module docstring. ``on``: a session (to campaign) or a client."""

    def __init__(self, on: Any, path: str, lock_delay: float = 0.0) -> None:
        super().__init__(on)
        self.path = path.rstrip("/")
        self.lock_delay = lock_delay
        self._lock: Lock | None = None

    @property
    def is_leader(self) -> bool:
        return self._lock is not None and self._lock.is_acquired

    def fence(self) -> Compare:
        """The Compare that holds while this candidate leads (its election
        file at its revision), for guarding transactions; answered at once.
        RuntimeError unless leading."""
        if self._lock is None or not self._lock.is_acquired:
            raise RuntimeError(f"not the leader of {self.path}")
        return self._lock.fence()

    def campaign(self, value: bytes | str, timeout: float | None = None) -> Any:
        """Become leader with ``value``: the fencing token once leading."""
        if self._lock is not None:
            raise RuntimeError("already campaigning: resign first")
        self._lock = Lock(self._session(), self.path, self.lock_delay, value)
        result = self._lock.acquire(timeout)
        if self.blocking:
            return result

        def failed(failure: Any) -> Any:
            self._lock = None
            return failure

        return result.addErrback(failed)

    def resign(self) -> Any:
        """Step down (or stop campaigning)."""
        lock, self._lock = self._lock, None
        if lock is None:
            return self._run(_nothing())
        return lock.release()

    def leader(self) -> Any:
        """The leader's value, or None."""
        return self._run(self._leader())

    def _leader(self) -> Recipe[bytes | None]:
        _, entries = yield from listing(self.path)
        return entries[0].value if entries else None

    def observe(self, callback: Callable[[bytes | None], object]) -> Any:
        """Call ``callback(leader value)`` now and at each change until it returns False."""
        return self._run(observe_first(self.path, callback))


def _nothing() -> Recipe[None]:
    return None
    yield  # a generator that yields nothing


def observe_first(directory: str, callback: Callable[[bytes | None], object]) -> Recipe[None]:
    """Tell ``callback`` the value of the first file under ``directory`` now
    and whenever it changes, until ``callback`` returns False (or the run
    is cancelled: that ends it too, with None)."""
    unset = object()
    last: Any = unset
    try:
        while True:
            rev, entries = yield from listing(directory)
            first = entries[0].path if entries else None
            if first != last:       # a new leader (even one with the same value)
                last = first
                if callback(entries[0].value if entries else None) is False:
                    return
            yield from wait_change(directory + "/*", rev, None)
    except CancelledError:
        return
