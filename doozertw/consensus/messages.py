"""Raft data types and peer messages: all attrs frozen classes.

Node ids are strings. Terms and indexes are non-negative integers; index 0 and
term 0 stand for "before the first entry". Every message carries ``src``,
``dst`` and ``term`` (the sender's current term, except ``PreVote`` and a
granted ``PreVoteResponse``, which carry the term the pre-candidate would
campaign in).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Union

import attrs


class EntryKind(enum.IntEnum):
    """What a log entry holds: opaque application data or a ConfChange."""

    NORMAL = 0
    CONF_CHANGE = 1


class ConfChangeOp(enum.IntEnum):
    """One-server membership operations (Raft dissertation §4.1)."""

    ADD_VOTER = 0  # also promotes an existing learner
    ADD_LEARNER = 1
    REMOVE_NODE = 2


def _ids(ids: Iterable[str]) -> frozenset[str]:
    return frozenset(ids)


def _entries(entries: Iterable[Entry]) -> tuple[Entry, ...]:
    return tuple(entries)


@attrs.frozen
class ConfState:
    """A cluster configuration: who votes and who only receives the log."""

    voters: frozenset[str] = attrs.field(converter=_ids, factory=frozenset)
    learners: frozenset[str] = attrs.field(converter=_ids, factory=frozenset)

    def members(self) -> frozenset[str]:
        return self.voters | self.learners

    def apply(self, change: ConfChange) -> ConfState:
        """The configuration after ``change``; raises ValueError if invalid."""
        nid = change.node_id
        if change.op == ConfChangeOp.ADD_VOTER:
            return ConfState(self.voters | {nid}, self.learners - {nid})
        if change.op == ConfChangeOp.ADD_LEARNER:
            if nid in self.voters:
                raise ValueError(f"{nid} is a voter; remove it first")
            return ConfState(self.voters, self.learners | {nid})
        if nid in self.voters and len(self.voters) == 1:
            raise ValueError("cannot remove the last voter")
        return ConfState(self.voters - {nid}, self.learners - {nid})


@attrs.frozen
class ConfChange:
    """A membership change; travels encoded in a CONF_CHANGE entry's data."""

    op: ConfChangeOp = attrs.field(converter=ConfChangeOp)
    node_id: str

    def encode(self) -> bytes:
        return bytes([int(self.op)]) + self.node_id.encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        if not data:
            raise ValueError("empty conf change")
        return cls(ConfChangeOp(data[0]), data[1:].decode("utf-8"))


@attrs.frozen
class Entry:
    """One log entry. A NORMAL entry with empty data is a leader's no-op."""

    term: int
    index: int
    kind: EntryKind = attrs.field(default=EntryKind.NORMAL, converter=EntryKind)
    data: bytes = b""

    def conf_change(self) -> ConfChange:
        return ConfChange.decode(self.data)

    def size(self) -> int:
        return len(self.data) + 24


@attrs.frozen
class SnapshotMeta:
    """Where a snapshot sits in the log and the configuration at that point."""

    index: int = 0
    term: int = 0
    conf: ConfState = attrs.field(factory=ConfState)


@attrs.frozen
class Snapshot:
    """A compaction point plus the application's opaque state up to it."""

    meta: SnapshotMeta = attrs.field(factory=SnapshotMeta)
    data: bytes = b""

    @property
    def index(self) -> int:
        return self.meta.index

    @property
    def term(self) -> int:
        return self.meta.term


@attrs.frozen
class HardState:
    """What must be durable before messages of the same Ready are sent."""

    term: int = 0
    vote: str = ""  # "" means no vote this term
    commit: int = 0


# -- peer messages ---------------------------------------------------------


@attrs.frozen
class RequestVote:
    """``transfer`` marks a campaign ordered by TimeoutNow: it overrides
    the receivers' leader lease."""

    src: str
    dst: str
    term: int
    last_index: int
    last_term: int
    transfer: bool = False


@attrs.frozen
class RequestVoteResponse:
    src: str
    dst: str
    term: int
    granted: bool


@attrs.frozen
class PreVote:
    """Would you vote for me in ``term``? The receiver changes nothing."""

    src: str
    dst: str
    term: int
    last_index: int
    last_term: int


@attrs.frozen
class PreVoteResponse:
    src: str
    dst: str
    term: int
    granted: bool


@attrs.frozen
class AppendEntries:
    """Entries after (prev_index, prev_term); ``commit`` is the leader's."""

    src: str
    dst: str
    term: int
    prev_index: int
    prev_term: int
    commit: int
    # The codec reads this annotation's text ("tuple"), so no parameters.
    entries: tuple = attrs.field(converter=_entries, factory=tuple)  # type: ignore[type-arg]


@attrs.frozen
class AppendEntriesResponse:
    """Accept: ``index`` is the follower's match. Reject: ``index`` is the
    rejected prev_index and (hint_index, hint_term) is the follower's last
    entry that might match, for fast backtracking. ``reset`` (with reject)
    says the follower's log ends at hint_index, below what this leader
    believes it has: it lost its state, so the leader forgets its match."""

    src: str
    dst: str
    term: int
    index: int
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0
    reset: bool = False


@attrs.frozen
class Heartbeat:
    """Leadership assertion; ``ctx`` echoes the newest pending ReadIndex."""

    src: str
    dst: str
    term: int
    commit: int
    ctx: bytes = b""


@attrs.frozen
class HeartbeatResponse:
    src: str
    dst: str
    term: int
    ctx: bytes = b""


@attrs.frozen
class InstallSnapshot:
    src: str
    dst: str
    term: int
    snapshot: Snapshot


@attrs.frozen
class InstallSnapshotResponse:
    """``index`` is the follower's last index after handling the snapshot."""

    src: str
    dst: str
    term: int
    index: int


@attrs.frozen
class ReadIndexRequest:
    """A follower forwards a linearizable read to the leader."""

    src: str
    dst: str
    term: int
    ctx: bytes


@attrs.frozen
class ReadIndexResponse:
    src: str
    dst: str
    term: int
    ctx: bytes
    index: int


@attrs.frozen
class TimeoutNow:
    """Leadership transfer: campaign at once, skipping pre-vote and lease."""

    src: str
    dst: str
    term: int


MESSAGE_TYPES = (
    RequestVote,
    RequestVoteResponse,
    PreVote,
    PreVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    TimeoutNow,
)

Message = Union[
    RequestVote, RequestVoteResponse, PreVote, PreVoteResponse,
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse,
    InstallSnapshot, InstallSnapshotResponse, ReadIndexRequest,
    ReadIndexResponse, TimeoutNow,
]
"""Any peer message (one of MESSAGE_TYPES)."""
