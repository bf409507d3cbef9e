"""Exactly-once application of proposals, and the cluster snapshot format.

A proposal can reach the log twice (a duplicated or re-sent Forward). Every
node applies the log through the same ``AppliedProposals`` table, so every
node skips the same copies: the second entry carrying (origin, pid) changes
nothing. The table is part of the replicated state, so it travels in
snapshots with the store:

    snapshot data = b"DZC1" + u32 store length + store snapshot + table
    table         = u16 origins, then per origin (in order of last use):
                    u16 name length + name + u32 count + count x u64 pid

Each origin remembers its last ``per_origin`` pids and at most
``max_origins`` origins are kept (the least recently used go first), so
a copy delayed beyond that window would apply again.
"""

from __future__ import annotations

import collections
import struct

from twisted.logger import Logger

from doozertw.errors import DoozerError, ErrCode

MAGIC = b"DZC1"
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


class AppliedProposals:
    """The (origin, pid) pairs applied recently; see the module docstring."""

    def __init__(self, per_origin=10000, max_origins=256):
        self.per_origin = per_origin
        self.max_origins = max_origins
        self._origins = collections.OrderedDict()

    def first_time(self, origin, pid):
        """Record (origin, pid); False if it was applied before."""
        pids = self._origins.get(origin)
        if pids is None:
            pids = self._origins[origin] = collections.OrderedDict()
            while len(self._origins) > self.max_origins:
                self._origins.popitem(last=False)
        else:
            self._origins.move_to_end(origin)
        if pid in pids:
            return False
        pids[pid] = None
        if len(pids) > self.per_origin:
            pids.popitem(last=False)
        return True

    def encode(self) -> bytes:
        parts = [_U16.pack(len(self._origins))]
        for origin, pids in self._origins.items():
            raw = origin.encode("utf-8")
            parts.append(_U16.pack(len(raw)) + raw + _U32.pack(len(pids)))
            parts.extend(_U64.pack(pid) for pid in pids)
        return b"".join(parts)

    def restore(self, data: bytes):
        """Replace the table with the encoded one; DoozerError if malformed."""
        origins = collections.OrderedDict()
        try:
            (count,), pos = _U16.unpack_from(data, 0), _U16.size
            for _ in range(count):
                (size,) = _U16.unpack_from(data, pos)
                pos += _U16.size
                origin = data[pos:pos + size].decode("utf-8")
                pos += size
                (n,) = _U32.unpack_from(data, pos)
                pos += _U32.size
                pids: collections.OrderedDict[int, None] = collections.OrderedDict()
                for _ in range(n):
                    pids[_U64.unpack_from(data, pos)[0]] = None
                    pos += _U64.size
                origins[origin] = pids
        except (struct.error, UnicodeDecodeError) as exc:
            raise DoozerError(ErrCode.OTHER, f"bad proposal table: {exc}") from exc
        if pos != len(data):
            raise DoozerError(ErrCode.OTHER, "bad proposal table: trailing bytes")
        self._origins = origins


def pack_snapshot(store_bytes: bytes, table: AppliedProposals) -> bytes:
    return MAGIC + _U32.pack(len(store_bytes)) + store_bytes + table.encode()


def unpack_snapshot(data: bytes):
    """(store snapshot bytes, encoded table); DoozerError if malformed."""
    head = len(MAGIC) + _U32.size
    if data[:len(MAGIC)] != MAGIC or len(data) < head:
        raise DoozerError(ErrCode.OTHER, "not a cluster snapshot")
    (size,) = _U32.unpack_from(data, len(MAGIC))
    if head + size > len(data):
        raise DoozerError(ErrCode.OTHER, "truncated cluster snapshot")
    return data[head:head + size], data[head + size:]


class EntryApplier:
    """Applies committed log entries to ``store``, each proposal once: the
    one place that turns entries into store changes (the driver, and
    disaster recovery replaying a survivor's log, both use it)."""

    log = Logger()

    def __init__(self, store):
        self.store = store
        self.proposals = AppliedProposals()
        self.duplicates = 0

    def restore(self, data: bytes) -> None:
        """Replace store and table with a cluster snapshot's."""
        store_bytes, table = unpack_snapshot(data)
        self.store.restore(store_bytes)
        self.proposals.restore(table)

    def check(self, data: bytes) -> None:
        """DoozerError unless ``data`` is a cluster snapshot ``restore``
        would load (nothing is changed)."""
        from doozertw.store import Store
        store_bytes, table = unpack_snapshot(data)
        Store(history=self.store.history,
              history_bytes=self.store.history_bytes).restore(store_bytes)
        AppliedProposals().restore(table)

    def snapshot(self) -> bytes:
        """The cluster snapshot of the store and the table now."""
        return pack_snapshot(self.store.snapshot(), self.proposals)

    def apply(self, entry):
        """Apply ``entry``; returns (proposal, outcome), both None for a
        no-op, a conf change, a bad entry (logged) or a second copy."""
        from doozertw.cluster import envelope as env
        from doozertw.consensus import EntryKind
        from doozertw.consensus.codec import CodecError
        from doozertw.store import decode as decode_mutation
        if entry.kind != EntryKind.NORMAL or not entry.data:
            return None, None
        try:
            proposal = env.Proposal.decode(entry.data)
            mutation = decode_mutation(proposal.mutation)
        except (CodecError, DoozerError) as exc:
            self.log.error("skipping bad entry {index}: {error}", index=entry.index,
                           error=str(exc))
            return None, None
        if not self.proposals.first_time(proposal.origin, proposal.pid):
            self.duplicates += 1
            return None, None  # a second copy: applied once already
        return proposal, self.store.apply(mutation)


__all__ = ["AppliedProposals", "EntryApplier", "pack_snapshot", "unpack_snapshot"]
