"""PURE Raft consensus core: messages, log, node state machine, quorum,
snapshots and membership. No I/O, no clock, randomness only injected."""

from doozertw.consensus.log import LogError, MemoryStorage, RaftLog
from doozertw.consensus.messages import (
    ConfChange, ConfChangeOp, ConfState, Entry, EntryKind, HardState,
    Snapshot, SnapshotMeta,
)
from doozertw.consensus.raft import RaftNode
from doozertw.consensus.storage import Storage
from doozertw.consensus.ready import (
    ConfChangeInProgress, Dropped, InvalidConfChange, NotLeader, PeerStatus,
    RaftError, ReadState, Ready, Role, SoftState, Status, early_send_allowed,
    is_leader_early_message,
)

__all__ = [
    "ConfChange", "ConfChangeInProgress", "ConfChangeOp", "ConfState",
    "Dropped", "Entry", "EntryKind", "HardState", "InvalidConfChange",
    "LogError", "MemoryStorage", "NotLeader", "PeerStatus", "RaftError",
    "RaftLog", "RaftNode", "ReadState", "Ready", "Role", "Snapshot",
    "SnapshotMeta", "SoftState", "Status", "Storage",
    "early_send_allowed", "is_leader_early_message",
]
