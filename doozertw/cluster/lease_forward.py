"""Keep-alives and time-left questions from a follower to the leader.

Leases are timed by the leader alone (doozertw.cluster.lessor). A follower's
Lessor asks through ``LeaseForwarder.ask``: one ``LeaseAsk`` envelope to the
node it believes leads, answered by a ``LeaseAnswer``. No answer within
``timeout`` seconds, no known leader, or an answer from a node that is not
the promoted leader fails the question with DoozerError(OTHER); the client
retries (a keep-alive is idempotent).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from doozertw.cluster import envelope as env
from doozertw.cluster.lessor import not_leader
from doozertw.errors import DoozerError

MAX_ASKED = 100_000
"""Leases in one question (a listing of more asks in several)."""


class LeaseForwarder:
    """Asks the leader's lessor; answers other followers when leader."""

    log = Logger()

    def __init__(self, driver: Any, reactor: Any, answer: Callable[..., dict[int, float]],
                 timeout: float) -> None:
        """``answer(leases, renew)``: this node's Lessor.answer."""
        self.driver = driver
        self.reactor = reactor
        self.answer = answer
        self.timeout = timeout
        self._ids = itertools.count((driver.life << 32) + 1)
        self._pending: dict[int, tuple[defer.Deferred[dict[int, float]], Any]] = {}
        driver.on_envelope[env.LeaseAsk] = self._asked
        driver.on_envelope[env.LeaseAnswer] = self._answered

    def ask(self, leases: tuple[int, ...], renew: bool) -> defer.Deferred[dict[int, float]]:
        """The leader's seconds left per lease it knows (see module docstring)."""
        if len(leases) > MAX_ASKED:
            parts = [self.ask(leases[i:i + MAX_ASKED], renew)
                     for i in range(0, len(leases), MAX_ASKED)]
            return defer.gatherResults(parts, consumeErrors=True).addCallback(_merged)
        leader = self.driver.leader
        if not leader or leader == self.driver.member_id:
            return defer.fail(not_leader())
        req = next(self._ids)
        d: defer.Deferred[dict[int, float]] = defer.Deferred()
        timer = self.reactor.callLater(self.timeout, self._timed_out, req)
        self._pending[req] = (d, timer)
        self.driver.send_envelope(env.name_of(leader),
                                  env.LeaseAsk(self.driver.name, req, renew, list(leases)))  # type: ignore[arg-type]
        return d

    def _timed_out(self, req: int) -> None:
        waiting = self._pending.pop(req, None)
        if waiting is not None:
            waiting[0].errback(DoozerError(
                not_leader().code, f"the leader did not answer about leases "
                                   f"within {self.timeout:g}s"))

    def _asked(self, from_name: str, message: env.LeaseAsk) -> None:
        if env.name_of(message.origin) != from_name:
            return
        try:
            answer = self.answer(tuple(message.leases), message.renew)
        except DoozerError:
            self.driver.send_envelope(from_name, env.LeaseAnswer(message.req, False))
            return
        items = [(lease, int(seconds * 1000)) for lease, seconds in sorted(answer.items())]
        self.driver.send_envelope(
            from_name, env.LeaseAnswer(message.req, True, items))  # type: ignore[arg-type]

    def _answered(self, from_name: str, message: env.LeaseAnswer) -> None:
        waiting = self._pending.pop(message.req, None)
        if waiting is None:
            return
        d, timer = waiting
        if timer.active():
            timer.cancel()
        if not message.ok:
            d.errback(not_leader())
            return
        d.callback({lease: ms / 1000.0 for lease, ms in message.items})

    def fail_all(self, why: str) -> None:
        """Fail every question still waiting (the node is stopping)."""
        pending, self._pending = self._pending, {}
        for d, timer in pending.values():
            if timer.active():
                timer.cancel()
            d.errback(DoozerError(not_leader().code, why))


def _merged(parts: list[dict[int, float]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for part in parts:
        out.update(part)
    return out


__all__ = ["LeaseForwarder"]
