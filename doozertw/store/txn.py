"""The pure rules of a transaction that need no store state.

``check_ops_disjoint``: a transaction touches each path at most once and
never a path inside another op's path, so that checking every op against
the tree as it was before the transaction is exactly as good as checking
each against the tree the earlier ops left behind.
"""

from __future__ import annotations

from collections.abc import Sequence

from doozertw.errors import ErrCode
from doozertw.store import paths
from doozertw.store.mutation import Compare, DeleteFile, SetFile


def check_ops_disjoint(ops: Sequence[SetFile | DeleteFile]) -> ErrCode | None:
    """BAD_PATH if a path is invalid, repeated, or inside another op's path."""
    seen: set[str] = set()
    for op in ops:
        if not paths.is_valid_path(op.path) or op.path == paths.ROOT or op.path in seen:
            return ErrCode.BAD_PATH
        seen.add(op.path)
    for path in sorted(seen):
        parent = path
        while True:
            parent = parent.rsplit("/", 1)[0]
            if not parent:
                break
            if parent in seen:
                return ErrCode.BAD_PATH
    return None


def check_compare(compare: Compare) -> ErrCode | None:
    """BAD_PATH for a compare on an invalid path; RANGE for a negative rev."""
    if not paths.is_valid_path(compare.path):
        return ErrCode.BAD_PATH
    if compare.rev is not None and compare.rev < 0:
        return ErrCode.RANGE
    return None


__all__ = ["check_compare", "check_ops_disjoint"]
