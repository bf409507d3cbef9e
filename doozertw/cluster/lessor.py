"""Lease clocks: when a lease expires, and keep-alives that are not replicated.

The store records leases (doozertw.store.leases); time is kept here, by the
leader only. While this node is the promoted leader, ``Lessor`` holds a
deadline per lease on its reactor's monotonic clock, restarts it on every
keep-alive, and proposes ``RevokeLease(expired=True)`` through Raft for each
lease past its deadline, so expiry is one committed entry that every
replica applies the same way. Keep-alives change only the leader's
deadlines: they are never written to the log.

Failover: a node promoted to leader (after its read barrier, so it has
applied everything committed before its term) gives every lease ``ttl +
extension`` seconds, ``extension`` being at least the election timeout, so
no lease expires early because its holder's keep-alives went to a leader
that died. A follower forwards keep-alives and time-left questions to the
leader (``ask_leader``); a node that is neither answers NOT_LEADER-style
DoozerError(OTHER) and the client retries elsewhere.

Expiry is checked every ``interval`` seconds, so a lease ends between
``ttl`` and ``ttl + interval`` seconds after its last keep-alive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import Outcome, Store
from doozertw.store.mutation import Mutation, RevokeLease

DEFAULT_INTERVAL = 0.5


class Scheduler(Protocol):
    """What the lessor needs of a reactor (IReactorTime)."""

    def seconds(self) -> float: ...

    def callLater(self, delay: float, f: Callable[..., Any], *a: Any) -> Any: ...


AskLeader = Callable[[tuple[int, ...], bool], "defer.Deferred[dict[int, float]]"]
"""``ask_leader(leases, renew)``: the leader's seconds left for each lease it
knows (after restarting their countdowns if ``renew``)."""


def not_leader() -> DoozerError:
    return DoozerError(ErrCode.OTHER, "no leader to keep leases: try again")


class Lessor:
    """Deadlines of every lease while this node leads; see the module docstring."""

    log = Logger()

    def __init__(self, store: Store, propose: Callable[[Mutation], defer.Deferred[Outcome]],
                 reactor: Scheduler, *, extension: float, min_ttl: int = 1,
                 interval: float = DEFAULT_INTERVAL,
                 ask_leader: AskLeader | None = None) -> None:
        self.store = store
        self.propose = propose
        self.reactor = reactor
        self.extension = extension
        self.min_ttl = min_ttl
        self.interval = interval
        self.ask_leader = ask_leader
        self.active = False
        self._deadlines: dict[int, float] = {}
        self._revoking: set[int] = set()
        self._timer: Any = None

    # -- leadership ------------------------------------------------------------

    def promote(self) -> None:
        """This node leads and has applied everything committed before its
        term: every lease gets ``ttl + extension`` from now."""
        if self.active:
            return
        now = self.reactor.seconds()
        self._deadlines = {lease: now + ttl + self.extension
                           for lease, ttl in self.store.leases.items()}
        self._revoking.clear()
        self.active = True
        self._arm()

    def demote(self) -> None:
        """This node no longer leads: forget every deadline."""
        self.active = False
        self._deadlines.clear()
        self._revoking.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- questions -------------------------------------------------------------

    def keepalive(self, lease: int) -> defer.Deferred[float]:
        """Restart ``lease``'s countdown; the seconds left (its TTL). NOENT if
        the leader does not know it (expired or never granted)."""
        return self._ask((lease,), True).addCallback(self._one, lease)

    def remaining(self, leases: tuple[int, ...]) -> defer.Deferred[dict[int, float]]:
        """Seconds left per lease, for those the leader knows."""
        return self._ask(leases, False)

    @staticmethod
    def _one(answer: dict[int, float], lease: int) -> float:
        if lease not in answer:
            raise DoozerError(ErrCode.NOENT, f"lease {lease} does not exist")
        return answer[lease]

    def _ask(self, leases: tuple[int, ...], renew: bool) -> defer.Deferred[dict[int, float]]:
        if self.active:
            return defer.succeed(self.answer(leases, renew))
        if self.ask_leader is None:
            return defer.fail(not_leader())
        return self.ask_leader(leases, renew)

    def answer(self, leases: tuple[int, ...], renew: bool) -> dict[int, float]:
        """The promoted leader's answer: seconds left per known lease. Raises
        DoozerError(OTHER) if this node is not the promoted leader."""
        if not self.active:
            raise not_leader()
        now = self.reactor.seconds()
        out = {}
        for lease in leases:
            if lease not in self.store.leases or lease in self._revoking:
                continue
            ttl = self.store.leases.ttl(lease)
            if renew:
                self._deadlines[lease] = max(self._deadlines.get(lease, 0.0), now + ttl)
            deadline = self._deadlines.setdefault(lease, now + ttl)
            out[lease] = max(0.0, deadline - now)
        return out

    def granted(self, lease: int) -> None:
        """A grant made through this node was applied: start its countdown."""
        if self.active and lease in self.store.leases:
            self._deadlines.setdefault(lease, self.reactor.seconds()
                                       + self.store.leases.ttl(lease))
            self._arm()

    # -- expiry ----------------------------------------------------------------

    def _arm(self) -> None:
        if self.active and self._timer is None:
            self._timer = self.reactor.callLater(self.interval, self._check)

    def _check(self) -> None:
        self._timer = None
        if not self.active:
            return
        now = self.reactor.seconds()
        leases = self.store.leases
        for lease in [lease for lease in self._deadlines if lease not in leases]:
            del self._deadlines[lease]
        for lease, ttl in leases.items():
            deadline = self._deadlines.setdefault(lease, now + ttl)
            if deadline <= now and lease not in self._revoking:
                self._expire(lease)
        self._arm()

    def _expire(self, lease: int) -> None:
        self._revoking.add(lease)
        self.log.info("lease.expired: {lease}", lease=lease)

        def applied(outcome: Outcome) -> None:
            self._revoking.discard(lease)
            self._deadlines.pop(lease, None)

        def failed(failure: Any) -> None:
            # the deadline stays past: the next check proposes it again
            self._revoking.discard(lease)
            self.log.warn("lease.expire.failed: {lease}: {error}", lease=lease,
                          error=failure.getErrorMessage())

        self.propose(RevokeLease(lease, expired=True)).addCallbacks(applied, failed)


__all__ = ["AskLeader", "DEFAULT_INTERVAL", "Lessor", "not_leader"]
