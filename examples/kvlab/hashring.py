"""Consistent hashing of keys over groups (pure).

Each group owns ``replicas`` points on a 64-bit ring (SHA-1 of
``"<group>#<i>"``); a key belongs to the group of the first point at or
after the key's own hash, wrapping around. Adding or removing a group moves
only the keys that land on that group's points; every client that knows the
same set of groups routes every key to the same group.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable


class EmptyRing(LookupError):
    """No group to route to."""


def point(text: str) -> int:
    """A position on the ring: the first 8 bytes of SHA-1, big-endian."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


class HashRing:
    """An immutable ring over ``groups`` (duplicates ignored)."""

    def __init__(self, groups: Iterable[str], replicas: int = 64) -> None:
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self.groups: frozenset[str] = frozenset(groups)
        self.replicas = replicas
        ring = sorted((point(f"{g}#{i}"), g) for g in self.groups for i in range(replicas))
        self._points = [p for p, _ in ring]
        self._owners = [g for _, g in ring]

    def route(self, key: str) -> str:
        """The group that owns ``key``; EmptyRing if there is none."""
        if not self._points:
            raise EmptyRing("no live group")
        index = bisect.bisect_left(self._points, point(key))
        return self._owners[index % len(self._owners)]

    def __len__(self) -> int:
        return len(self.groups)

    def __repr__(self) -> str:
        return f"HashRing({sorted(self.groups)!r}, replicas={self.replicas})"
