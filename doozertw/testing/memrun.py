"""Driving a ``MemoryNetwork`` (doozertw.cluster.memnet) in tests: run its
fake clock in 10 ms steps until a Deferred fires or a condition holds."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from doozertw.cluster.memnet import MemoryNetwork
from doozertw.errors import DoozerError

STEP = 0.01


def outcome(net: MemoryNetwork, d: Deferred, seconds: float = 1.0) -> Any:
    """Run ``net`` until ``d`` fires (at most ``seconds``): its result, or
    its failure raised. ``AssertionError`` if it never fires."""
    box: list = []
    d.addBoth(box.append)
    for _ in range(int(seconds / STEP)):
        if box:
            break
        net.run(STEP)
    assert box, "Deferred did not fire"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def failure(net: MemoryNetwork, d: Deferred, seconds: float) -> DoozerError:
    """The ``DoozerError`` ``d`` fails with (see ``outcome``); anything else,
    a result included, is an ``AssertionError``."""
    try:
        result = outcome(net, d, seconds)
    except DoozerError as err:
        return err
    raise AssertionError(f"expected a DoozerError, got {result!r}")


def run_until(net: MemoryNetwork, predicate: Callable[[], object],
              seconds: float = 5.0) -> None:
    """Run ``net`` until ``predicate()`` holds; ``AssertionError`` after
    ``seconds`` of its clock."""
    for _ in range(int(seconds / STEP)):
        if predicate():
            return
        net.run(STEP)
    assert predicate(), "condition not reached in time"
