"""The pure data store: a versioned tree of files with history and watches.

No reactor, no sockets, no clock: the store is driven by calls and answers
synchronously.
"""

from doozertw.store.mutation import (
    CLOBBER, DEL, DIR, MISSING, SET, DeleteFile, Event, Mutation, Nop, Outcome,
    SetFile, decode, encode)
from doozertw.store.paths import ANY, Glob, check_path, is_valid_path
from doozertw.store.store import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES, Store
from doozertw.store.watches import Watch

__all__ = [
    "ANY", "CLOBBER", "DEL", "DEFAULT_HISTORY", "DEFAULT_HISTORY_BYTES", "DIR",
    "DeleteFile", "Event", "Glob", "MISSING", "Mutation", "Nop", "Outcome", "SET",
    "SetFile", "Store", "Watch", "check_path", "decode", "encode",
    "is_valid_path",
]
