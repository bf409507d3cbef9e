"""Groups: Registry (a party of live members), Barrier, DoubleBarrier.

- ``Registry(on, path)``: ``register(name, value)`` creates ``path/name``
  under the session's lease (REV_MISMATCH if the name is taken), so a
  member disappears with its session; ``unregister(name)``;
  ``members()`` answers {name: value}; ``members_with_revs(rev=None)``
  answers {name: Member(name, value, rev)}, oldest registration first,
  read at one revision (``rev``, else the current one): a member's ``rev``
  makes ``Compare(path, rev=member.rev)`` hold while that registration
  lives (``Registry.fence(member)``); ``watch(callback)`` calls
  ``callback(members)`` now and at every change of the member set or a
  member's value, until the callback returns False (or the Twisted
  Deferred it answers is cancelled: it then fires with None).
- ``Barrier(on, path)``: ``set()`` raises it (creates ``path``),
  ``remove()`` lowers it, ``wait(timeout)`` blocks while it is up.
- ``DoubleBarrier(session, path, count)``: ``enter()`` blocks until
  ``count`` participants have entered; ``leave()`` blocks until every
  participant has left. Participants are ephemeral files under
  ``path/members/``; the participant that sees ``count`` of them creates
  ``path/ready``, which lets everyone through; the last to leave deletes it.
  A participant whose session ends counts as having left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import CancelledError

from doozertw.client.core import WaitTimeout, call
from doozertw.client.recipes._steps import Recipe
from doozertw.client.recipes.base import (
    Flavoured, LockTimeout, create_unique, deadline_left, deadline_of, delete_quietly, listing,
    wait_change)
from doozertw.client import plans
from doozertw.errors import DoozerError, ErrCode
from doozertw.store import Event
from doozertw.store.mutation import Compare

Members = dict[str, bytes]


@attrs.frozen
class Member:
    """A live registration: its name, value and the revision of its file
    (the registration's creation revision, unless the file was rewritten)."""

    name: str
    value: bytes
    rev: int


def _name(event: Event) -> str:
    return event.path.rsplit("/", 1)[-1]


class Registry(Flavoured):
    """Live members under ``path``; see the module docstring."""

    def __init__(self, on: Any, path: str) -> None:
        super().__init__(on)
        self.path = path.rstrip("/")

    def register(self, name: str, value: bytes | str = b"") -> Any:
        """Revision of the member file ``path/name`` (ephemeral, created)."""
        session = self._session()
        return session.create_ephemeral(f"{self.path}/{name}", value)  # type: ignore[attr-defined]

    def unregister(self, name: str) -> Any:
        return self._run(delete_quietly(f"{self.path}/{name}", -1))

    def members(self) -> Any:
        """{name: value} of the live members."""
        return self._run(self._members())

    def _members(self) -> Recipe[Members]:
        _, entries = yield from listing(self.path)
        return {_name(e): e.value for e in entries}

    def members_with_revs(self, rev: int | None = None) -> Any:
        """{name: Member(name, value, rev)} of the live members at revision
        ``rev`` (None: now), oldest registration first."""
        return self._run(self._members_with_revs(rev))

    def _members_with_revs(self, at: int | None) -> Recipe[dict[str, Member]]:
        _, entries = yield from listing(self.path, at)
        return {_name(e): Member(_name(e), e.value, e.rev) for e in entries}

    def fence(self, member: Member) -> Compare:
        """The Compare that holds while ``member``'s registration (as read)
        lives: for a TXN that must act only on a live member."""
        return Compare(f"{self.path}/{member.name}", rev=member.rev)

    def watch(self, callback: Callable[[Members], object]) -> Any:
        """``callback(members)`` now and at every change, until it returns False."""
        return self._run(self._watch(callback))

    def _watch(self, callback: Callable[[Members], object]) -> Recipe[None]:
        last: Members | None = None
        try:
            while True:
                rev, entries = yield from listing(self.path)
                members = {_name(e): e.value for e in entries}
                if members != last:
                    last = members
                    if callback(dict(members)) is False:
                        return
                yield from wait_change(self.path + "/*", rev, None)
        except CancelledError:
            return


Party = Registry


class Barrier(Flavoured):
    """A barrier at ``path``: up while the file exists."""

    def __init__(self, on: Any, path: str) -> None:
        super().__init__(on)
        self.path = path.rstrip("/")

    def set(self, value: bytes | str = b"") -> Any:
        """Raise the barrier (no-op if it is up)."""
        return self._run(self._set(value))

    def _set(self, value: bytes | str) -> Recipe[None]:
        try:
            yield call("SET", path=self.path, rev=0, value=value)
        except DoozerError as e:
            if e.code != ErrCode.REV_MISMATCH:
                raise

    def remove(self) -> Any:
        """Lower the barrier: every waiter proceeds."""
        return self._run(delete_quietly(self.path, -1))

    def wait(self, timeout: float | None = None) -> Any:
        """Return once the barrier is down; LockTimeout after ``timeout``."""
        return self._run(self._wait(timeout))

    def _wait(self, timeout: float | None) -> Recipe[None]:
        deadline = yield from deadline_of(timeout)
        while True:
            rev = yield from plans.pin(None)
            _, file_rev = yield call("GET", path=self.path, rev=rev)
            if file_rev == 0:
                return
            yield from _wait_until(self.path, rev, deadline)


def _wait_until(glob: str, rev: int, deadline: float | None) -> Recipe[None]:
    """Wait for a change of ``glob`` after ``rev`` (LockTimeout at ``deadline``)."""
    left = yield from deadline_left(deadline, None)
    try:
        yield from wait_change(glob, rev, left)
    except WaitTimeout:
        raise LockTimeout() from None


class DoubleBarrier(Flavoured):
    """``count`` participants enter together and leave together."""

    def __init__(self, session: Any, path: str, count: int, value: bytes | str = b"") -> None:
        super().__init__(session)
        self._session()
        if count < 1:
            raise ValueError("a double barrier needs at least one participant")
        self.path = path.rstrip("/")
        self.count = count
        self.value = value.encode() if isinstance(value, str) else value
        self._mine: tuple[str, int] | None = None

    @property
    def _members(self) -> str:
        return self.path + "/members"

    @property
    def _ready(self) -> str:
        return self.path + "/ready"

    def enter(self, timeout: float | None = None) -> Any:
        return self._run(self._enter(timeout))

    def _enter(self, timeout: float | None) -> Recipe[None]:
        session = self._session()
        session.ensure_alive()
        deadline = yield from deadline_of(timeout)
        path = f"{self._members}/{session.unique_name(session.lease)}"
        mine = yield from create_unique(path, self.value, session.lease)
        self._mine = (path, mine)
        while True:
            rev, entries = yield from listing(self._members)
            if len(entries) >= self.count:
                try:
                    yield call("SET", path=self._ready, rev=0, value=b"")
                except DoozerError as e:
                    if e.code != ErrCode.REV_MISMATCH:
                        raise
                return
            _, ready_rev = yield call("GET", path=self._ready, rev=rev)
            if ready_rev != 0:
                return
            try:
                yield from _wait_until(self.path + "/**", rev, deadline)
            except LockTimeout:
                self._mine = None
                yield from delete_quietly(path, mine)
                raise

    def leave(self, timeout: float | None = None) -> Any:
        return self._run(self._leave(timeout))

    def _leave(self, timeout: float | None) -> Recipe[None]:
        deadline = yield from deadline_of(timeout)
        mine, self._mine = self._mine, None
        if mine is not None:
            yield from delete_quietly(*mine)
        while True:
            rev, entries = yield from listing(self._members)
            if not entries:
                yield from delete_quietly(self._ready, -1)
                return
            yield from _wait_until(self._members + "/*", rev, deadline)
