"""Peer payloads of a cluster node: Raft messages and application envelopes.

Every payload handed to the peer transport starts with one byte naming its
layer: ``R`` then a Raft message (doozertw.consensus.codec), or ``A`` then
an application envelope defined here. Envelopes are attrs frozen classes
encoded field by field (no pickle):

- int: u64 big-endian; str: u16 length + UTF-8; bytes: u32 length + raw;
  bool: one byte, 0 or 1 (any other value is malformed) -- the primitives
  of doozertw.wire.binary;
- ``items``/``ids``/``leases``: u32 count, then per item (u64, bytes) for
  Forward, (u64, u64, u64) for ForwardAck, (u64, u64) for LeaseAnswer, one
  u64 for ForwardReject and LeaseAsk.

``decode_payload`` raises EnvelopeError (a CodecError) for malformed input
and nothing else.

Also here: the data of a replicated log entry (``Proposal``: origin member,
proposal id, mutation bytes) and member-id helpers (``name~incarnation``).
"""

from __future__ import annotations

import attrs

from doozertw.consensus import codec as raft_codec
from doozertw.consensus.codec import CodecError
from doozertw.wire.binary import Reader, Writer

RAFT = b"R"
APP = b"A"
INCARNATION_SEP = "~"


class EnvelopeError(CodecError):
    """The bytes are not a valid payload."""


def name_of(member_id: str) -> str:
    """The node name of a Raft member id (``n1~a3f9`` -> ``n1``)."""
    return member_id.split(INCARNATION_SEP, 1)[0]


# -- envelopes -----------------------------------------------------------------


class FreshState:
    """Values of ProbeReply.state."""

    FRESH = "fresh"      # no state, still deciding whether to found or join
    MEMBER = "member"    # part of a running cluster (has a Raft log)
    JOINING = "joining"  # waiting to be added as a learner
    FOUNDER = "founder"  # a member that founded the cluster counting the asker
    #                      (this very incarnation) as a fresh founder


@attrs.frozen
class Probe:
    """A starting node asks whether a cluster already exists. Sent only
    while the sender has no state, so it also says "I am fresh"."""

    member: str


@attrs.frozen
class ProbeReply:
    member: str
    state: str
    leader: str = ""


@attrs.frozen
class JoinRequest:
    """A node without state asks to be added as a learner."""

    member: str
    peer_addr: str
    client_addr: str = ""


@attrs.frozen
class Forward:
    """Proposals forwarded by ``origin`` to the leader of ``term``:
    (proposal id, entry data). A receiver that is not leader in exactly
    ``term`` rejects them all, so an accepted proposal has that term."""

    origin: str
    term: int
    items: tuple = attrs.field(converter=tuple, factory=tuple)


@attrs.frozen
class ForwardAck:
    """The leader appended the proposals: (proposal id, index, term)."""

    items: tuple = attrs.field(converter=tuple, factory=tuple)


@attrs.frozen
class ForwardReject:
    """The receiver is not the leader of the Forward's ``term``; ``leader``
    is its hint ("" if none)."""

    term: int
    ids: tuple = attrs.field(converter=tuple, factory=tuple)
    leader: str = ""


@attrs.frozen
class SnapshotChunk:
    """One piece of an encoded Raft InstallSnapshot payload streamed to a
    peer (doozertw.cluster.chunks): the ``data`` at ``offset`` of the
    ``total_len``-byte payload of transfer ``snapshot_id``; ``seq`` counts
    chunks from 0; ``last`` marks the chunk that ends the payload."""

    snapshot_id: str
    seq: int
    total_len: int
    offset: int
    data: bytes
    last: bool


@attrs.frozen
class LeaseAsk:
    """A follower asks the leader how long ``leases`` have left, restarting
    their countdowns first if ``renew`` (a forwarded keep-alive); ``req``
    names the question in the LeaseAnswer."""

    origin: str
    req: int
    renew: bool
    leases: tuple = attrs.field(converter=tuple, factory=tuple)


@attrs.frozen
class LeaseAnswer:
    """The answer to LeaseAsk ``req``: ``ok`` false if the receiver is not
    the promoted leader; else (lease, milliseconds left) per known lease."""

    req: int
    ok: bool
    items: tuple = attrs.field(converter=tuple, factory=tuple)


# New types are appended: the type byte is the index in this tuple.
ENVELOPE_TYPES = (Probe, ProbeReply, JoinRequest, Forward, ForwardAck, ForwardReject,
                  SnapshotChunk, LeaseAsk, LeaseAnswer)

_KINDS = {"str": "text", "int": "u64", "tuple": None, "bytes": "blob", "bool": "boolean"}
_ITEM_KINDS = {Forward: ("u64", "blob"), ForwardAck: ("u64", "u64", "u64"),
               ForwardReject: ("u64",), LeaseAsk: ("u64",), LeaseAnswer: ("u64", "u64")}


class _Reader(Reader):
    """doozertw.wire's primitives; raises EnvelopeError."""

    error = EnvelopeError
    what = "envelope"


def _fields(cls):
    return [(f.name, _KINDS[f.type]) for f in attrs.fields(cls)]


def encode_envelope(envelope) -> bytes:
    """``A`` + type byte + fields; raises TypeError for a non-envelope."""
    cls = type(envelope)
    if cls not in ENVELOPE_TYPES:
        raise TypeError(f"not an envelope: {cls.__name__}")
    w = Writer()
    w.raw(APP)
    w.u8(ENVELOPE_TYPES.index(cls))
    for name, kind in _fields(cls):
        value = getattr(envelope, name)
        if kind is None:
            w.u32(len(value))
            for item in value:
                item = item if isinstance(item, tuple) else (item,)
                for part_kind, part in zip(_ITEM_KINDS[cls], item, strict=True):
                    getattr(w, part_kind)(part)
        else:
            getattr(w, kind)(value)
    return w.getvalue()


def _decode_envelope(data):
    if len(data) < 2 or data[1] >= len(ENVELOPE_TYPES):
        raise EnvelopeError("unknown envelope type")
    cls = ENVELOPE_TYPES[data[1]]
    r = _Reader(data, 2)
    values = {}
    for name, kind in _fields(cls):
        if kind is None:
            count = r.u32()
            if count > len(data):
                raise EnvelopeError("item count exceeds payload")
            parts = _ITEM_KINDS[cls]
            items = [tuple(getattr(r, k)() for k in parts) for _ in range(count)]
            values[name] = [i[0] for i in items] if len(parts) == 1 else items
        else:
            values[name] = getattr(r, kind)()
    r.expect_end()
    return cls(**values)


def encode_raft(message) -> bytes:
    return RAFT + raft_codec.encode(message)


def decode_payload(data: bytes):
    """A Raft message or an envelope; raises CodecError when malformed."""
    if not data:
        raise EnvelopeError("empty payload")
    layer = data[:1]
    if layer == RAFT:
        return raft_codec.decode(bytes(data[1:]))
    if layer == APP:
        return _decode_envelope(bytes(data))
    raise EnvelopeError(f"unknown payload layer {layer!r}")


# -- log entry data ----------------------------------------------------------


@attrs.frozen
class Proposal:
    """The data of a replicated log entry: who proposed it (member id and a
    proposal id unique for that member) and the encoded store mutation."""

    origin: str
    pid: int
    mutation: bytes

    def encode(self) -> bytes:
        """origin (u16 length + UTF-8), pid u64, then the mutation bytes."""
        w = Writer()
        w.text(self.origin)
        w.u64(self.pid)
        w.raw(self.mutation)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Proposal:
        """Inverse of encode; raises EnvelopeError if malformed."""
        r = _Reader(data)
        origin = r.text()
        pid = r.u64()
        return cls(origin, pid, r.rest())


__all__ = [
    "APP", "ENVELOPE_TYPES", "EnvelopeError", "Forward", "ForwardAck",
    "ForwardReject", "FreshState", "JoinRequest", "LeaseAnswer", "LeaseAsk", "Probe", "ProbeReply",
    "Proposal", "RAFT", "SnapshotChunk", "decode_payload", "encode_envelope", "encode_raft",
    "name_of",
]
