"""The handshake that opens every peer connection.

The dialer's first frame is a HELLO naming the protocol version, the
cluster, itself and the node it believes it is dialing. The acceptor
answers with its own HELLO (sender and recipient swapped) or with a REFUSE
and closes. Nothing else may be sent before the handshake completes.

HELLO content: 4-byte magic ``DZTW``, u16 version, then (for version 1)
cluster, sender and recipient, each a u16 length and UTF-8 bytes. Version
2 (sent by nodes with peer authentication, docs/security.md) adds a u8 of
``AuthFlags``, then a nonce and a proof, each a u16 length and bytes (see
auth.py); the dialer's proof is empty (it follows in an AUTH frame). The
magic and version are fixed for all versions so that an unknown version
can be recognised and refused; the rest may change with the version.
A version 1 HELLO is unauthenticated: only a node started with
``--insecure-peers`` accepts it.

REFUSE content: u16 ``RefuseCode``, then a u16 length and UTF-8 detail.

This module is pure: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import enum
import struct
from typing import Any

import attrs

MAGIC = b"DZTW"
PROTOCOL_VERSION = 1       # unauthenticated (--insecure-peers)
AUTH_VERSION = 2           # with AuthFlags, nonce and proof
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION, AUTH_VERSION})

_HEAD = struct.Struct(">4sH")
_U16 = struct.Struct(">H")
_U8 = struct.Struct(">B")


class HandshakeError(ValueError):
    """A handshake frame could not be decoded."""


class UnsupportedVersion(HandshakeError):
    """A well-formed HELLO of a protocol version this node does not speak."""

    def __init__(self, version: int):
        super().__init__(f"unsupported peer protocol version {version}")
        self.version = version


class RefuseCode(enum.IntEnum):
    """Why an acceptor refused a HELLO."""

    OTHER = 0
    BAD_VERSION = 1
    WRONG_CLUSTER = 2
    WRONG_NODE = 3      # the recipient named is not this node
    SAME_NAME = 4       # the dialer claims this node's own name
    BAD_HELLO = 5       # malformed handshake
    AUTH_MISMATCH = 6   # the two sides use different peer authentication
    BAD_AUTH = 7        # a wrong secret proof
    BAD_CERT = 8        # the TLS certificate does not name the claimed node


class AuthFlags(enum.IntFlag):
    """The peer authentication a node uses; both sides must use the same."""

    NONE = 0
    SECRET = 1          # cluster-secret challenge-response + frame tags
    TLS = 2             # mutual TLS, certificates naming the nodes


@attrs.frozen
class Hello:
    """One side's identity: protocol version, cluster and node names; from
    version 2 also its AuthFlags, its nonce and (acceptor) its proof."""

    version: int
    cluster: str
    sender: str
    recipient: str
    auth: int = 0
    nonce: bytes = b""
    proof: bytes = b""

    def encode(self) -> bytes:
        parts = [_HEAD.pack(MAGIC, self.version)]
        for text in (self.cluster, self.sender, self.recipient):
            _put_text(parts, text)
        if self.version >= AUTH_VERSION:
            parts.append(_U8.pack(self.auth))
            for blob in (self.nonce, self.proof):
                _put_bytes(parts, blob)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        """Parse a HELLO; raises UnsupportedVersion or HandshakeError."""
        if len(data) < _HEAD.size:
            raise HandshakeError("short HELLO")
        magic, version = _HEAD.unpack_from(data, 0)
        if magic != MAGIC:
            raise HandshakeError("not a doozertw peer (bad magic)")
        if version not in SUPPORTED_VERSIONS:
            raise UnsupportedVersion(version)
        offset = _HEAD.size
        cluster, offset = _get_text(data, offset)
        sender, offset = _get_text(data, offset)
        recipient, offset = _get_text(data, offset)
        extra: dict[str, Any] = {}
        if version >= AUTH_VERSION:
            if len(data) < offset + 1:
                raise HandshakeError("truncated HELLO")
            extra["auth"] = data[offset]
            extra["nonce"], offset = _get_bytes(data, offset + 1)
            extra["proof"], offset = _get_bytes(data, offset)
        if offset != len(data):
            raise HandshakeError("trailing bytes after HELLO")
        return cls(version, cluster, sender, recipient, **extra)


@attrs.frozen
class Refusal:
    """The acceptor's reason for refusing a connection."""

    code: RefuseCode
    detail: str = ""

    def encode(self) -> bytes:
        parts = [_U16.pack(int(self.code))]
        _put_text(parts, self.detail[:1000])
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Refusal:
        if len(data) < _U16.size:
            raise HandshakeError("short REFUSE")
        (number,) = _U16.unpack_from(data, 0)
        detail, offset = _get_text(data, _U16.size)
        if offset != len(data):
            raise HandshakeError("trailing bytes after REFUSE")
        try:
            code = RefuseCode(number)
        except ValueError:
            code = RefuseCode.OTHER
        return cls(code, detail)


def judge_hello(hello: Hello, cluster: str, local_name: str,
                auth: int = AuthFlags.NONE) -> Refusal | None:
    """The acceptor's verdict on a dialer's HELLO: None to accept. ``auth``
    is this node's AuthFlags; the dialer's must be the same."""
    mismatch = auth_mismatch(hello, auth)
    if mismatch is not None:
        return Refusal(RefuseCode.AUTH_MISMATCH, mismatch)
    if hello.cluster != cluster:
        return Refusal(RefuseCode.WRONG_CLUSTER,
                       f"this is cluster {cluster!r}, not {hello.cluster!r}")
    if hello.recipient != local_name:
        return Refusal(RefuseCode.WRONG_NODE,
                       f"this is node {local_name!r}, not {hello.recipient!r}")
    if not hello.sender or hello.sender == local_name:
        return Refusal(RefuseCode.SAME_NAME,
                       f"dialer name {hello.sender!r} is not a distinct node")
    return None


def auth_mismatch(hello: Hello, auth: int) -> str | None:
    """Why ``hello`` does not use the peer authentication ``auth``, or None."""
    theirs = hello.auth if hello.version >= AUTH_VERSION else AuthFlags.NONE
    if theirs != auth:
        return (f"peer authentication differs: this node uses {_flags_text(auth)}, "
                f"the peer {_flags_text(theirs)}")
    return None


def _flags_text(flags: int) -> str:
    if not flags:
        return "none (--insecure-peers)"
    return "+".join(str(f.name).lower() for f in AuthFlags if f and f & flags) or str(flags)


def judge_reply(reply: Hello, cluster: str, local_name: str,
                peer_name: str, auth: int = AuthFlags.NONE) -> str | None:
    """The dialer's verdict on the acceptor's HELLO: None, or a reason."""
    mismatch = auth_mismatch(reply, auth)
    if mismatch is not None:
        return mismatch
    if reply.cluster != cluster:
        return f"peer is in cluster {reply.cluster!r}, not {cluster!r}"
    if reply.sender != peer_name:
        return f"dialed {peer_name!r} but reached {reply.sender!r}"
    if reply.recipient != local_name:
        return f"peer greeted {reply.recipient!r}, not {local_name!r}"
    return None


def _put_text(parts: list, text: str) -> None:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("handshake text too long")
    parts.append(_U16.pack(len(raw)))
    parts.append(raw)


def _put_bytes(parts: list, raw: bytes) -> None:
    if len(raw) > 0xFFFF:
        raise ValueError("handshake field too long")
    parts.append(_U16.pack(len(raw)))
    parts.append(raw)


def _get_bytes(data: bytes, offset: int) -> tuple[bytes, int]:
    if len(data) < offset + _U16.size:
        raise HandshakeError("truncated handshake field")
    (length,) = _U16.unpack_from(data, offset)
    start = offset + _U16.size
    end = start + length
    if len(data) < end:
        raise HandshakeError("truncated handshake field")
    return bytes(data[start:end]), end


def _get_text(data: bytes, offset: int) -> tuple[str, int]:
    raw, end = _get_bytes(data, offset)
    try:
        return raw.decode("utf-8"), end
    except UnicodeDecodeError:
        raise HandshakeError("handshake text is not UTF-8") from None
