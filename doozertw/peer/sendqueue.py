"""A bounded FIFO of payloads waiting to be sent to one peer.

Pure. Bounded by message count and by total bytes. When a new payload
would exceed either bound, the OLDEST payloads are dropped until it fits:
Raft tolerates message loss, and newer messages carry the newer terms,
commit indexes and entries, so the freshest state is what is worth keeping.
A payload larger than the byte bound on its own is dropped itself.
"""

from __future__ import annotations

import collections


class SendQueue:
    """FIFO of byte strings bounded by count and bytes, dropping oldest."""

    def __init__(self, max_messages: int, max_bytes: int):
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("queue bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: collections.deque[bytes] = collections.deque()
        self.bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, payload: bytes) -> int:
        """Append ``payload``; return how many payloads were dropped."""
        size = len(payload)
        if size > self.max_bytes:
            self.dropped += 1
            return 1
        dropped = 0
        while self._items and (len(self._items) >= self.max_messages
                               or self.bytes + size > self.max_bytes):
            self.bytes -= len(self._items.popleft())
            dropped += 1
        self._items.append(payload)
        self.bytes += size
        self.dropped += dropped
        return dropped

    def pop(self) -> bytes:
        """Remove and return the oldest payload (IndexError if empty)."""
        payload = self._items.popleft()
        self.bytes -= len(payload)
        return payload

    def clear(self) -> int:
        """Drop everything; return how many payloads were discarded."""
        count = len(self._items)
        self._items.clear()
        self.bytes = 0
        return count
