"""The leader's view of each follower's replication, and quorum arithmetic.

A Progress is a small state machine:

- PROBE: we do not know where the follower's log matches ours; send one
  AppendEntries at a time and wait for its answer (or a heartbeat answer).
- REPLICATE: the follower matches up to ``match``; stream entries without
  waiting (pipelining), at most ``max_inflight`` unacknowledged messages.
- SNAPSHOT: an InstallSnapshot is on its way; send nothing else until it
  is acknowledged or times out.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable, Iterable, Set


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """Last indexes of AppendEntries sent but not yet acknowledged."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: collections.deque[int] = collections.deque()

    def full(self) -> bool:
        return len(self.queue) >= self.capacity

    def add(self, last_index: int) -> None:
        self.queue.append(last_index)

    def free_le(self, index: int) -> None:
        while self.queue and self.queue[0] <= index:
            self.queue.popleft()

    def free_first(self) -> None:
        if self.queue:
            self.queue.popleft()

    def reset(self) -> None:
        self.queue.clear()

    def __len__(self) -> int:
        return len(self.queue)


class Progress:
    """Replication progress of one peer, as tracked by the leader."""

    def __init__(self, next_index: int, max_inflight: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_ticks = 0
        self.recent_active = False
        self.inflights = Inflights(max_inflight)

    def __repr__(self) -> str:
        return (f"Progress({self.state.value}, match={self.match}, "
                f"next={self.next}, inflight={len(self.inflights)})")

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self._reset(ProgressState.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(ProgressState.REPLICATE)

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_ticks = 0
        self.inflights.reset()

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def maybe_update(self, index: int) -> bool:
        """An accepted append up to ``index``; True if match advanced."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int) -> None:
        """Record that entries up to ``last_index`` were just sent."""
        if self.state == ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True

    def maybe_decrease(self, rejected: int, hint: int) -> bool:
        """A rejected append of prev_index ``rejected``; the follower's log
        may match up to ``hint``. False if the rejection is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True


def quorum_size(voters: Set[str]) -> int:
    return len(voters) // 2 + 1


def committed_index(voters: Set[str], match_of: Callable[[str], int]) -> int:
    """Largest index replicated on a majority of ``voters``."""
    if not voters:
        return 0
    matches = sorted((match_of(v) for v in voters), reverse=True)
    return matches[quorum_size(voters) - 1]


def has_quorum(voters: Set[str], ids: Iterable[str]) -> bool:
    return len(set(voters) & set(ids)) >= quorum_size(voters)
