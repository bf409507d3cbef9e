"""Waiting, without blocking the reactor, for a condition to hold."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.02,
               clock: IReactorTime | None = None) -> Deferred:
    """A Deferred that fires (with None) once ``predicate()`` is true,
    checking now and then every ``step`` seconds of ``clock`` (default: the
    global reactor); it fails with ``AssertionError`` once more than
    ``timeout`` seconds have passed."""
    if clock is None:
        from twisted.internet import reactor as clock
    # zope interfaces are opaque to mypy: IReactorTime's methods look unbound
    timer: Any = clock
    deadline = timer.seconds() + timeout

    async def poll() -> None:
        while not predicate():
            if timer.seconds() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
            await deferLater(timer, step, lambda: None)
    return Deferred.fromCoroutine(poll())
