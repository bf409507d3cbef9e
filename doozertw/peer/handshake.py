"""The handshake that opens every peer connection.

The dialer's first frame is a HELLO naming the protocol version, the
cluster, itself and the node it believes it is dialing. The acceptor
answers with its own HELLO (sender and recipient swapped) or with a REFUSE
and closes. Nothing else may be sent before the handshake completes.

HELLO content: 4-byte magic ``DZTW``, u16 version, then (for version 1)
cluster, sender and recipient, each a u16 length and UTF-8 bytes. The magic
and version are fixed for all versions so that an unknown version can be
recognised and refused; the rest may change with the version.

REFUSE content: u16 ``RefuseCode``, then a u16 length and UTF-8 detail.

This module is pure: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import enum
import struct

import attrs

MAGIC = b"DZTW"
PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})

_HEAD = struct.Struct(">4sH")
_U16 = struct.Struct(">H")


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


@attrs.frozen
class Hello:
    """One side's identity: protocol version, cluster and node names."""

    version: int
    cluster: str
    sender: str
    recipient: str

    def encode(self) -> bytes:
        parts = [_HEAD.pack(MAGIC, self.version)]
        for text in (self.cluster, self.sender, self.recipient):
            _put_text(parts, text)
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
        if offset != len(data):
            raise HandshakeError("trailing bytes after HELLO")
        return cls(version, cluster, sender, recipient)


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


def judge_hello(hello: Hello, cluster: str, local_name: str) -> Refusal | None:
    """The acceptor's verdict on a dialer's HELLO: None to accept."""
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


def judge_reply(reply: Hello, cluster: str, local_name: str,
                peer_name: str) -> str | None:
    """The dialer's verdict on the acceptor's HELLO: None, or a reason."""
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


def _get_text(data: bytes, offset: int) -> tuple[str, int]:
    if len(data) < offset + _U16.size:
        raise HandshakeError("truncated handshake text")
    (length,) = _U16.unpack_from(data, offset)
    start = offset + _U16.size
    end = start + length
    if len(data) < end:
        raise HandshakeError("truncated handshake text")
    try:
        return bytes(data[start:end]).decode("utf-8"), end
    except UnicodeDecodeError:
        raise HandshakeError("handshake text is not UTF-8") from None
