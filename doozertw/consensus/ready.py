"""What a RaftNode hands its driver: the Ready batch and its parts.

The driver handles a Ready in this order, then calls ``node.advance(ready)``:

1. if ``snapshot``: restore the application from ``snapshot.data``;
2. persist ``snapshot``, ``entries`` and ``hard_state`` (``storage.save``),
   durably (fsynced) before any message that depends on them is sent;
3. send ``messages``;
4. apply ``committed_entries`` in order;
5. for each ``read_states`` item, answer the read once applied >= index.

Persistence may be asynchronous (a writer thread). While a Ready is being
persisted the driver may keep calling ``tick``, ``step``, ``propose`` and
``read_index`` (what they produce waits for the next Ready), but must not
call ``ready()`` again before ``advance()``. A leader's replication messages
(``LEADER_EARLY_MESSAGES``) may be sent before its own persistence
completes when ``early_send_allowed(ready, persisted)`` says so: the leader
counts itself toward the commit quorum only for entries acknowledged as
persisted through ``advance`` (Raft thesis §10.2.1). Every other message
(votes, append acknowledgements, ...) is sent only after step 2.

On restart the driver restores the application from the stored snapshot
(``storage.snapshot.data``) before building the node from ``storage``; the
node then re-delivers committed entries after the snapshot. Compaction:
``storage.compact(node.compact(applied_index, state_bytes))``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from doozertw.consensus.messages import (
    ConfState, Entry, HardState, Message, Snapshot,
)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@attrs.frozen
class SoftState:
    """Volatile state the driver may want to react to (not persisted)."""

    leader: str | None
    role: Role


@attrs.frozen
class ReadState:
    """A ReadIndex answer: reading at ``index`` (once applied) for ``ctx``
    is linearizable."""

    ctx: bytes
    index: int


@attrs.frozen
class Ready:
    """One batch of work for the driver (see the module docstring)."""

    messages: tuple[Message, ...] = ()
    entries: tuple[Entry, ...] = ()
    hard_state: HardState | None = None
    committed_entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    read_states: tuple[ReadState, ...] = ()
    soft_state: SoftState | None = None

    def __bool__(self) -> bool:
        return bool(self.messages or self.entries or self.hard_state
                    or self.committed_entries or self.snapshot
                    or self.read_states or self.soft_state)


@attrs.frozen
class PeerStatus:
    """The leader's view of one member's replication: ``match`` is the
    highest index known to be in its log, ``next`` the next one to send,
    ``state`` "probe", "replicate" or "snapshot"."""

    match: int
    next: int
    state: str
    recent_active: bool


@attrs.frozen
class Dropped:
    """The last message ``RaftNode.step`` refused: its type name, sender
    and why (for the driver to log)."""

    kind: str
    src: str
    reason: str


@attrs.frozen
class Status:
    """A copy of a RaftNode's state (RaftNode.status()); later calls on the
    node do not change it. ``progress`` is filled only on the leader;
    ``committed_in_term`` says whether the commit index is at an entry of
    the current term (a new leader's first commit; membership changes and
    reads wait for it); ``dropped`` counts the messages ``step`` refused,
    ``last_dropped`` describes the latest."""

    id: str
    term: int
    vote: str | None
    role: Role
    leader: str | None
    commit: int
    applied: int
    last_index: int
    snapshot_index: int
    conf: ConfState
    progress: Mapping[str, PeerStatus] = attrs.field(factory=dict)
    committed_in_term: bool = False
    dropped: int = 0
    last_dropped: Dropped | None = None

    @property
    def is_leader(self) -> bool:
        return self.role == Role.LEADER


def is_leader_early_message(message: Message) -> bool:
    """Messages a leader may send before its own fsync (see the module
    docstring): replication and heartbeats, which depend on no durable
    state of the sender beyond its term."""
    return type(message).__name__ in _LEADER_EARLY_NAMES


_LEADER_EARLY_NAMES = frozenset({"AppendEntries", "Heartbeat", "InstallSnapshot"})


def early_send_allowed(ready: Ready,
                       persisted_hard_state: HardState | None) -> bool:
    """May ``ready``'s leader messages go out before it is persisted? Only
    if it changes neither the term nor the vote that is already durable
    (``persisted_hard_state``): messages of a new term, or sent on the
    strength of a new vote, must wait for the fsync."""
    hs = ready.hard_state
    if hs is None:
        return True
    return (persisted_hard_state is not None and hs.term == persisted_hard_state.term
            and hs.vote == persisted_hard_state.vote)


class RaftError(Exception):
    """Base class of errors RaftNode raises to its caller."""


class NotLeader(RaftError):
    """Only the leader accepts this; ``leader`` is the known leader or None."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader is {leader!r})")
        self.leader = leader


class ConfChangeInProgress(RaftError):
    """A membership change is already pending, or the leader has not yet
    committed an entry of its term; retry later."""


class InvalidConfChange(RaftError):
    """The change makes no sense for the current configuration."""
