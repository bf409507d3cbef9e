"""The kvlab client: route keys over the live groups, follow the primaries.

``KVClient`` reads every group's primary file at one revision and then
watches them from the next revision on, so it sees every change of
primary, in order. Keys go to groups by consistent hashing
(``hashring.HashRing``) over the groups that have a primary; a request goes
to the group's primary. When that fails (the primary died, or answers
``NOT_PRIMARY`` because the master moved on), the client waits for the
next change of primaries (at most ``poll`` seconds) and tries again, until
``deadline`` seconds have passed.

It also observes the coordinators' election, to report who is master.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from doozertw.client import DoozerClient, Event
from doozertw.client.recipes import Election
from examples.kvlab import layout
from examples.kvlab.hashring import EmptyRing, HashRing
from examples.kvlab.kvproto import Get, Put, Reply, Request
from examples.kvlab.lineclient import LinePool, LinkError, fire

log = Logger(namespace="kvlab.client")


class KVError(Exception):
    """A request could not be completed within its deadline."""


class KVClient:
    """See the module docstring. ``on_change(kind, what)`` hears
    ``("primary", group)`` and ``("master", name)`` changes."""

    def __init__(self, reactor: Any, doozer: DoozerClient, pool: LinePool | None = None,
                 deadline: float = 15.0, poll: float = 0.5,
                 on_change: Callable[[str, str], object] | None = None) -> None:
        self.reactor = reactor
        self.doozer = doozer
        self.pool = pool if pool is not None else LinePool(reactor)
        self.deadline = deadline
        self.poll = poll
        self.on_change = on_change
        self.primaries: dict[str, layout.Primary] = {}
        self.ring = HashRing([])
        self.master: str | None = None
        self._waiters: list[defer.Deferred[None]] = []
        self._watch: Any = None
        self._observer: Any = None

    async def start(self) -> None:
        """Read the primaries, then follow them and the election."""
        rev = await self.doozer.rev()
        for event in await self.doozer.walk_all(layout.PRIMARIES_GLOB, rev):
            self._primary_changed(event)
        self._watch = self.doozer.watch(layout.PRIMARIES_GLOB, rev=rev + 1,
                                        callback=self._primary_changed)
        # Cancelling the observer (stop) fires it with None: nothing to trap.
        self._observer = Election(self.doozer, layout.MASTER).observe(self._master_changed)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        if self._observer is not None:
            self._observer.cancel()
        self.pool.close()

    def _primary_changed(self, event: Event) -> None:
        where = layout.parse_path(event.path)
        if where is None or where.node is not None:
            return
        primary = layout.decode_primary(event.value, event.rev) if event.is_set else None
        if primary is None:
            self.primaries.pop(where.group, None)
        else:
            self.primaries[where.group] = primary
        self.ring = HashRing(self.primaries)
        self._tell("primary", where.group)

    def _master_changed(self, value: bytes | None) -> None:
        self.master = value.decode("ascii", "replace") if value else None
        self._tell("master", self.master or "")

    def _tell(self, kind: str, what: str) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            fire(d, None)
        if self.on_change is not None:
            self.on_change(kind, what)

    def route(self, key: str) -> tuple[str, layout.Primary]:
        """(group, its primary) for ``key``; EmptyRing if no group is live."""
        group = self.ring.route(key)
        return group, self.primaries[group]

    async def put(self, key: str, value: bytes) -> tuple[str, str, int]:
        """Write ``key``: (group, primary node, secondaries that acked)."""
        group, node, reply = await self._ask(key, Put(key, value), ("OK",))
        return group, node, int(reply.rest or b"0")

    async def get(self, key: str) -> tuple[str, str, bytes | None]:
        """Read ``key`` from its primary: (group, node, value or None)."""
        group, node, reply = await self._ask(key, Get(key), ("VALUE", "MISSING"))
        return group, node, reply.rest if reply.kind == "VALUE" else None

    async def _ask(self, key: str, request: Request,
                   accept: tuple[str, ...]) -> tuple[str, str, Reply]:
        give_up = self.reactor.seconds() + self.deadline
        why = "no attempt"
        while self.reactor.seconds() < give_up:
            try:
                group, primary = self.route(key)
            except EmptyRing:
                why = "no live group"
            else:
                try:
                    reply = await self.pool.request(primary.addr, request)
                except LinkError as e:
                    why = f"{primary.node}: {e}"
                else:
                    if reply.kind in accept:
                        return group, primary.node, reply
                    why = f"{primary.node}: {reply.kind} {reply.rest.decode('ascii', 'replace')}"
                    if reply.kind == "ERR" and reply.error not in ("NOT_PRIMARY",):
                        raise KVError(why)
            log.info("{key}: {why}; waiting for the primaries to change", key=key, why=why)
            await self._changed(min(self.poll, max(0.0, give_up - self.reactor.seconds())))
        raise KVError(f"{key}: gave up after {self.deadline}s ({why})")

    def _changed(self, timeout: float) -> defer.Deferred[None]:
        """Fires at the next change of primaries or master, or after ``timeout``."""
        d: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(d)
        timer = self.reactor.callLater(timeout, fire, d, None)
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d
