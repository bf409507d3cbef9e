"""Recipes as pure generators of steps, and the two drivers that run them.

A recipe's logic is written once, as a generator that yields steps and is
sent (or thrown) their outcomes:

- a ``Call``: its result, or its DoozerError thrown in;
- a list of Calls (a plan batch, see ``doozertw.client.plans``): the list
  of their outcomes, each a result or the exception (so ``yield from
  plans.walk_all(...)`` works inside a recipe);
- ``Wait(glob, rev, timeout)``: the first Event matching ``glob`` at or
  after ``rev``; WaitTimeout thrown in after ``timeout`` seconds;
- ``Sleep(seconds)``: None, that much later;
- ``NOW``: the driver's monotonic time in seconds.

``run_twisted`` runs one on a DoozerClient and answers a Deferred (its
canceller cancels the step in flight and throws CancelledError into the
recipe, which may clean up with more steps); ``run_blocking`` runs one on
a BlockingClient in the caller's thread and answers the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import attrs
from twisted.internet import defer, task
from twisted.python.failure import Failure

from doozertw.client.core import Call, WaitTimeout

T = TypeVar("T")


@attrs.frozen
class Wait:
    glob: str
    rev: int
    timeout: float | None = None


@attrs.frozen
class Sleep:
    seconds: float


class _Now:
    def __repr__(self) -> str:
        return "NOW"


NOW = _Now()

Step = Call | list[Call] | Wait | Sleep | _Now
Recipe = Generator[Any, Any, T]


def outcome(result: Any) -> Any:
    """``result`` of one batch entry, raising it if it is an exception."""
    if isinstance(result, BaseException):
        raise result
    return result


def run_blocking(client: Any, recipe: Recipe[T],
                 sleep: Callable[[float], object] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> T:
    """Run ``recipe`` on a BlockingClient; its answer (or its exception).

    A ``Wait`` that timed out stays outstanding on the server: the next
    ``Wait`` for the same glob and revision takes it up again instead of
    sending another WAIT (so a waiter that wakes every few seconds to check
    its session does not pile up WAITs on its connection). One still
    outstanding when the recipe ends is abandoned (its answer is dropped).
    """
    steps = _BlockingSteps(client, sleep, monotonic)
    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                step = recipe.throw(error) if error is not None else recipe.send(send)
            except StopIteration as stop:
                answer: T = stop.value
                return answer
            send, error = None, None
            try:
                send = steps.run(step)
            except Exception as e:  # thrown into the recipe, which decides
                error = e
    finally:
        steps.drop_wait()


class _BlockingSteps:
    def __init__(self, client: Any, sleep: Callable[[float], object],
                 monotonic: Callable[[], float]) -> None:
        self.client = client
        self.sleep = sleep
        self.monotonic = monotonic
        self.waiting: tuple[tuple[str, int], Any] | None = None   # (key, BlockingWatch)

    def drop_wait(self) -> None:
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting[1].close()

    def wait(self, step: Wait) -> Any:
        key = (step.glob, step.rev)
        if self.waiting is None or self.waiting[0] != key:
            self.drop_wait()
            self.waiting = (key, self.client.watch(step.glob, step.rev))
        watch = self.waiting[1]
        try:
            event = watch.next(step.timeout)
        except WaitTimeout:
            raise                       # still outstanding: taken up by the next Wait
        except Exception:
            self.waiting = None
            raise
        self.waiting = None
        return event

    def run(self, step: Any) -> Any:
        if isinstance(step, Call):
            return self.client.request(step)
        if isinstance(step, list):
            return self.client.many(step)
        if isinstance(step, Wait):
            return self.wait(step)
        if isinstance(step, Sleep):
            self.sleep(step.seconds)
            return None
        if step is NOW:
            return self.monotonic()
        raise TypeError(f"not a recipe step: {step!r}")


def _twisted_step(client: Any, reactor: Any, step: Any) -> defer.Deferred[Any]:
    d: defer.Deferred[Any]
    if isinstance(step, Call):
        d = client.request(step)
        return d
    if isinstance(step, list):
        d = client.many(step)
        return d
    if isinstance(step, Wait):
        d = client.wait(step.glob, step.rev, step.timeout)
        return d
    if isinstance(step, Sleep):
        return task.deferLater(reactor, step.seconds, lambda: None)
    if step is NOW:
        return defer.succeed(reactor.seconds())
    return defer.fail(TypeError(f"not a recipe step: {step!r}"))


def run_twisted(client: Any, reactor: Any, recipe: Recipe[T],
                session: Any = None) -> defer.Deferred[T]:
    """Deferred answer of ``recipe`` run on a DoozerClient.

    With a ``session`` (a Session), the step in flight is interrupted when
    the session becomes LOST or CLOSED: the recipe gets SessionLost thrown
    in (so a waiter learns at once that its turn will never come).
    """
    runner = _TwistedRun(client, reactor, recipe, session)
    runner.advance(None, None)
    return runner.done


class _TwistedRun:
    def __init__(self, client: Any, reactor: Any, recipe: Recipe[Any], session: Any) -> None:
        self.client = client
        self.reactor = reactor
        self.recipe = recipe
        self.session = session
        self.inner: defer.Deferred[Any] | None = None
        self.interrupt: BaseException | None = None
        self.done: defer.Deferred[Any] = defer.Deferred(self._cancel)
        if session is not None:
            session.add_listener(self._session_state)

    def _cancel(self, _: object) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.cancel()      # -> got() throws CancelledError into the recipe

    def _session_state(self, state: Any) -> None:
        if state.value in ("lost", "closed") and self.inner is not None:
            from doozertw.client.session import SessionLost
            self.interrupt = SessionLost(f"session {state.value}")
            self._cancel(None)

    def advance(self, send: Any, error: BaseException | None) -> None:
        while True:
            try:
                step = self.recipe.throw(error) if error is not None else self.recipe.send(send)
            except StopIteration as stop:
                self._finish(stop.value, None)
                return
            except BaseException as e:
                self._finish(None, e)
                return
            d = _twisted_step(self.client, self.reactor, step)
            box: list[Any] = []
            waiting = [False]

            def got(result: Any, box: list[Any] = box, waiting: list[bool] = waiting) -> None:
                if waiting[0]:
                    self.inner = None
                    if self.interrupt is not None:
                        result = Failure(self.interrupt)  # type: ignore[no-untyped-call]
                        self.interrupt = None
                    self.advance(*_split(result))
                else:
                    box.append(result)

            d.addBoth(got)
            if not box:             # not answered yet: continue when it is
                waiting[0] = True
                self.inner = d
                return
            send, error = _split(box[0])

    def _finish(self, value: Any, error: BaseException | None) -> None:
        if self.session is not None:
            self.session.remove_listener(self._session_state)
            self.session = None
        if self.done.called:        # cancelled: the recipe ran its cleanup
            return
        if error is not None:
            self.done.errback(Failure(error))  # type: ignore[no-untyped-call]
        else:
            self.done.callback(value)


def _split(result: Any) -> tuple[Any, BaseException | None]:
    if isinstance(result, Failure):
        return None, result.value
    return result, None
