"""Shared data: Counter (compare-and-set increments) and Queue (FIFO).

Neither needs a lease: both take a client or a session.

- ``Counter(on, path)``: ``value()``; ``add(delta=1)`` answers the new
  value. A read then a SET at the revision read (doozer's compare-and-set:
  it fails with REV_MISMATCH if anyone wrote in between), retried up to
  ``retries`` times. The value is stored as decimal ASCII.
- ``Queue(on, path)``: ``put(value)`` answers the item's sequence number:
  one TXN that checks ``path/seq`` is unchanged, bumps it and creates
  ``path/items/<seq, 20 digits>``, retried if someone else bumped it
  first, so names are sequential and sort in arrival order.
  ``get(timeout=None, block=True)`` takes the lowest item with a TXN that
  deletes it only if it is unchanged (so exactly one taker gets each
  item) and answers its value; it waits for an item if the queue is empty
  (None if ``block`` is False; LockTimeout after ``timeout``).
  ``size()`` counts the items.
"""

from __future__ import annotations

from typing import Any

from doozertw.client.core import ClientError, call
from doozertw.client.recipes._steps import Recipe
from doozertw.client.recipes.base import Flavoured, deadline_of, listing
from doozertw.client.recipes.group import _wait_until
from doozertw.errors import DoozerError, ErrCode
from doozertw.store.mutation import Compare, DeleteFile, SetFile

MAX_VALUE_DIGITS = 40
"""A counter or queue sequence longer than this is not ours: refuse it."""


class TooContended(ClientError):
    """A compare-and-set lost every one of its retries."""


def _number(value: bytes, path: str) -> int:
    if not value:
        return 0
    text = value.strip()
    if len(text) > MAX_VALUE_DIGITS or not text.lstrip(b"-").isdigit():
        raise DoozerError(ErrCode.OTHER, f"{path} does not hold a number")
    return int(text)


class Counter(Flavoured):
    """A shared integer at ``path``; see the module docstring."""

    def __init__(self, on: Any, path: str, retries: int = 1000) -> None:
        super().__init__(on)
        self.path = path
        self.retries = retries

    def value(self) -> Any:
        return self._run(self._value())

    def _value(self) -> Recipe[int]:
        value, _ = yield call("GET", path=self.path)
        return _number(value, self.path)

    def add(self, delta: int = 1) -> Any:
        """The value after adding ``delta`` atomically."""
        return self._run(self._add(delta))

    def _add(self, delta: int) -> Recipe[int]:
        for _ in range(self.retries):
            value, rev = yield call("GET", path=self.path)
            new = _number(value, self.path) + delta
            try:
                yield call("SET", path=self.path, rev=rev, value=str(new).encode())
            except DoozerError as e:
                if e.code == ErrCode.REV_MISMATCH and not isinstance(e, ClientError):
                    continue
                raise
            return new
        raise TooContended(f"{self.path}: {self.retries} compare-and-set attempts lost")


class Queue(Flavoured):
    """A FIFO queue under ``path``; see the module docstring."""

    def __init__(self, on: Any, path: str, retries: int = 1000) -> None:
        super().__init__(on)
        self.path = path.rstrip("/")
        self.retries = retries

    @property
    def _seq(self) -> str:
        return self.path + "/seq"

    @property
    def _items(self) -> str:
        return self.path + "/items"

    def put(self, value: bytes | str) -> Any:
        """The new item's sequence number."""
        data = value.encode() if isinstance(value, str) else bytes(value)
        return self._run(self._put(data))

    def _put(self, value: bytes) -> Recipe[int]:
        for _ in range(self.retries):
            seq_value, seq_rev = yield call("GET", path=self._seq)
            n = _number(seq_value, self._seq)
            result = yield call("TXN", compares=[Compare(self._seq, rev=seq_rev)], success=[
                SetFile(self._seq, seq_rev, str(n + 1).encode()),
                SetFile(f"{self._items}/{n:020d}", 0, value)])
            if result.succeeded:
                return n
        raise TooContended(f"{self.path}: {self.retries} puts lost")

    def get(self, timeout: float | None = None, block: bool = True) -> Any:
        """The lowest item's value, taken off the queue."""
        return self._run(self._get(timeout, block))

    def _get(self, timeout: float | None, block: bool) -> Recipe[bytes | None]:
        deadline = yield from deadline_of(timeout)
        while True:
            rev, items = yield from listing(self._items)
            for item in sorted(items, key=lambda e: e.path):
                result = yield call("TXN", compares=[Compare(item.path, rev=item.rev)],
                                    success=[DeleteFile(item.path, item.rev)])
                if result.succeeded:
                    return item.value
            if not block:
                return None
            yield from _wait_until(self._items + "/*", rev, deadline)

    def size(self) -> Any:
        return self._run(self._size())

    def _size(self) -> Recipe[int]:
        _, items = yield from listing(self._items)
        return len(items)
