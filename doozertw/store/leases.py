"""The store's lease table (pure): which leases exist and which files they own.

A lease is an id and a time-to-live in whole seconds. Time itself is not
here: the store only records leases and their files; whoever keeps the
clock (the leader's lessor, doozertw.cluster.lessor) proposes a
RevokeLease when one runs out. Every file belongs to at most one lease.
"""

from __future__ import annotations

from doozertw.store import paths


class LeaseTable:
    """Leases by id, each with its TTL and the set of its files."""

    def __init__(self) -> None:
        self._ttl: dict[int, int] = {}
        self._files: dict[int, set[str]] = {}
        self._owner: dict[str, int] = {}
        self.next_id = 1
        """The id the next grant without a chosen id takes."""

    def __len__(self) -> int:
        return len(self._ttl)

    def __contains__(self, lease: object) -> bool:
        return lease in self._ttl

    def grant(self, lease: int, ttl: int) -> int:
        """Create ``lease`` (0: ``next_id``) with ``ttl``; its id. The caller
        has checked that a chosen id is free."""
        if lease == 0:
            lease = self.next_id
        self._ttl[lease] = ttl
        self._files[lease] = set()
        self.next_id = max(self.next_id, lease + 1)
        return lease

    def remove(self, lease: int) -> list[str]:
        """Forget ``lease``; its files (still in the tree), in walk order."""
        del self._ttl[lease]
        owned = self._files.pop(lease)
        for path in owned:
            del self._owner[path]
        return sorted(owned, key=paths.sort_key)

    def attach(self, path: str, lease: int) -> None:
        """``path`` now belongs to ``lease`` (0: to none)."""
        self.detach(path)
        if lease:
            self._owner[path] = lease
            self._files[lease].add(path)

    def detach(self, path: str) -> None:
        """``path`` belongs to no lease (it was deleted or rewritten)."""
        lease = self._owner.pop(path, 0)
        if lease:
            self._files[lease].discard(path)

    def owner(self, path: str) -> int:
        """The lease ``path`` belongs to; 0 if none."""
        return self._owner.get(path, 0)

    def ttl(self, lease: int) -> int:
        """The TTL ``lease`` was granted with; KeyError if it does not exist."""
        return self._ttl[lease]

    def files(self, lease: int) -> tuple[str, ...]:
        """The files of ``lease``, in walk order; KeyError if none such."""
        return tuple(sorted(self._files[lease], key=paths.sort_key))

    def ids(self) -> list[int]:
        """Every lease id, ascending."""
        return sorted(self._ttl)

    def items(self) -> list[tuple[int, int]]:
        """(id, ttl) of every lease, by id."""
        return sorted(self._ttl.items())

    def attachments(self) -> list[tuple[str, int]]:
        """(path, lease) of every attached file, by path."""
        return sorted(self._owner.items())
