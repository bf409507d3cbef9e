"""A kvlab process's session: connected, started, and a Deferred that fires
with exit status 3 when the session is lost (the process must then stop)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from doozertw.client import DoozerClient
from doozertw.client.recipes import Session, SessionState

log = Logger()

LOST_STATUS = 3


async def open_session(reactor: Any, target: str, ttl: int, who: str
                       ) -> tuple[DoozerClient, Session, defer.Deferred[int]]:
    """(client, started session, ``lost``) for process ``who``."""
    client = DoozerClient(target, reactor=reactor)
    await client.connect()
    session = Session(client, ttl=ttl, reactor=reactor)
    lost: defer.Deferred[int] = defer.Deferred()

    def state(s: SessionState) -> None:
        if s == SessionState.LOST and not lost.called:
            log.warn("{who}: session LOST: stopping", who=who)
            lost.callback(LOST_STATUS)
        elif s == SessionState.SUSPENDED:
            log.warn("{who}: session SUSPENDED", who=who)

    session.add_listener(state)
    await session.start()
    return client, session, lost
