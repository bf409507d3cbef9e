"""The data nodes' line protocol and their bounded store (pure).

One request per line (``\\r\\n`` or ``\\n``), answered in order, one line each:

    GET <key>                     VALUE <value> | MISSING
    PUT <key> <value>             OK <acks> | ERR NOT_PRIMARY <node or ->
    REPL <epoch> <key> <value>    OK | ERR STALE <epoch>      (primary -> secondary)
    ROLE                          ROLE <group> <node> <primary|secondary> <epoch>

Keys are 1-128 of ``[A-Za-z0-9._:/-]``; a value is the rest of the line
(printable ASCII and spaces, at most ``MAX_VALUE`` bytes, possibly empty).
Anything else is ``ERR BAD_REQUEST <why>``; a line longer than ``MAX_LINE``
ends the connection (``server``). ``ERR FULL`` when the store holds
``max_keys`` keys and the key is new.
"""

from __future__ import annotations

import re

import attrs

MAX_KEY = 128
MAX_VALUE = 1024
MAX_LINE = 2048
MAX_KEYS = 10_000

_KEY = re.compile(rb"[A-Za-z0-9._:/-]{1,%d}\Z" % MAX_KEY)
_VALUE = re.compile(rb"[\x20-\x7e]{0,%d}\Z" % MAX_VALUE)
_EPOCH = re.compile(rb"[0-9]{1,18}\Z")


@attrs.frozen
class Get:
    key: str


@attrs.frozen
class Put:
    key: str
    value: bytes


@attrs.frozen
class Repl:
    epoch: int
    key: str
    value: bytes


@attrs.frozen
class Role:
    pass


@attrs.frozen
class BadRequest:
    why: str


Request = Get | Put | Repl | Role


def _key(raw: bytes) -> str:
    if not _KEY.match(raw):
        raise ValueError("bad key")
    return raw.decode("ascii")


def _value(raw: bytes) -> bytes:
    if not _VALUE.match(raw):
        raise ValueError(f"bad value (printable ASCII, at most {MAX_VALUE} bytes)")
    return raw


def parse_request(line: bytes) -> Request | BadRequest:
    """The request a line carries, or why it is not one."""
    verb, _, rest = line.partition(b" ")
    try:
        if verb == b"GET":
            return Get(_key(rest))
        if verb == b"PUT":
            key, sep, value = rest.partition(b" ")
            return Put(_key(key), _value(value))
        if verb == b"REPL":
            epoch, _, rest = rest.partition(b" ")
            key, sep, value = rest.partition(b" ")
            if not _EPOCH.match(epoch):
                raise ValueError("bad epoch")
            return Repl(int(epoch), _key(key), _value(value))
        if verb == b"ROLE" and not rest:
            return Role()
    except ValueError as e:
        return BadRequest(str(e))
    return BadRequest("unknown verb")


def encode_request(request: Request) -> bytes:
    """The line (without end of line) for a request."""
    if isinstance(request, Get):
        return b"GET " + request.key.encode()
    if isinstance(request, Put):
        return b"PUT " + request.key.encode() + b" " + request.value
    if isinstance(request, Repl):
        return b"REPL %d %s %s" % (request.epoch, request.key.encode(), request.value)
    return b"ROLE"


@attrs.frozen
class Reply:
    """An answer line split into its word and the rest (``VALUE``, ``OK``,
    ``MISSING``, ``ERR``, ``ROLE``)."""

    kind: str
    rest: bytes

    @property
    def ok(self) -> bool:
        return self.kind in ("OK", "VALUE", "MISSING", "ROLE")

    @property
    def error(self) -> str | None:
        """The error code (``NOT_PRIMARY``, ``STALE``, ...) of an ERR reply."""
        return self.rest.split(b" ", 1)[0].decode("ascii", "replace") if self.kind == "ERR" \
            else None


def parse_reply(line: bytes) -> Reply:
    kind, _, rest = line.partition(b" ")
    return Reply(kind.decode("ascii", "replace"), rest)


class KVStore:
    """A bounded in-memory map, and the highest replication epoch seen."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self.data: dict[str, bytes] = {}
        self.epoch = 0

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, key: str, value: bytes) -> bool:
        """Store ``value``; False (nothing changed) if the store is full."""
        if key not in self.data and len(self.data) >= self.max_keys:
            return False
        self.data[key] = value
        return True

    def replicate(self, epoch: int, key: str, value: bytes) -> bytes:
        """Apply a primary's write unless its epoch is older than one seen;
        the reply line."""
        if epoch < self.epoch:
            return b"ERR STALE %d" % self.epoch
        self.epoch = epoch
        return b"OK" if self.put(key, value) else b"ERR FULL"
