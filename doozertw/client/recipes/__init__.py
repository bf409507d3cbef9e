"""Coordination recipes on doozertw's leases and transactions.

Each recipe takes a session (``doozertw.client.session.Session`` or
``BlockingSession``) or, when it needs no lease, a client; its flavour
follows: on a Twisted session or client every method answers a Deferred,
on a blocking one the result itself. See docs/recipes.md.

- ``Lock`` (fair, fencing tokens, lock_delay), ``RWLock``, ``Semaphore``
- ``Election``
- ``Registry`` (alias ``Party``; ``Member``), ``Barrier``, ``DoubleBarrier``
- ``Counter``, ``Queue``
"""

from doozertw.client.recipes.base import LockTimeout
from doozertw.client.recipes.data import Counter, Queue, TooContended
from doozertw.client.recipes.election import Election
from doozertw.client.recipes.group import Barrier, DoubleBarrier, Member, Party, Registry
from doozertw.client.recipes.lock import Lock, RWLock, Semaphore
from doozertw.client.session import (
    BlockingSession, Session, SessionLost, SessionState)

__all__ = [
    "Barrier", "BlockingSession", "Counter", "DoubleBarrier", "Election", "Lock",
    "LockTimeout", "Member", "Party", "Queue", "RWLock", "Registry", "Semaphore", "Session",
    "SessionLost", "SessionState", "TooContended",
]
