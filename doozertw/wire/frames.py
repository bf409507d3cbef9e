"""Doozer's framing, sans I/O: a 4-byte big-endian length, then that many
bytes of a protobuf message.

``FrameReader`` is the one frame parser of the project: the server front
end and both clients feed it the bytes they receive and pull complete
frame bodies out of it, one at a time, so a caller can stop between two
frames (to apply back-pressure) and go on later. It holds no socket, no
clock and no reactor (the model is h11's ``receive_data``/``next_event``).

Contract of a reader made with ``max_frame``:

- ``feed(data)`` appends received bytes; it never parses or raises.
- ``next_frame()`` returns the body of the next complete frame, or None
  when more bytes are needed. It raises ``FrameTooLarge`` as soon as a
  header announces more than ``max_frame`` bytes (before that body
  arrives); the stream is then unusable, and the reader keeps raising.
- ``has_frame()`` is True exactly when ``next_frame()`` would not return
  None (a complete frame is buffered, or an oversized header is).
- ``buffered`` counts bytes received and not yet returned in a frame.

``parse_request``/``parse_response`` turn a body into a message and raise
``MalformedFrame`` for bytes that are not one; ``frame(message)`` is the
inverse of the whole pipeline.
"""

from __future__ import annotations

import struct
from typing import Final, cast

from google.protobuf.message import Message

from doozertw.wire.schema import Request, RequestMessage, Response, ResponseMessage

LENGTH: Final = struct.Struct(">I")
"""The frame header: body length, 4 bytes, big-endian unsigned."""

HEADER_SIZE: Final = LENGTH.size

_unpack_length = LENGTH.unpack_from
_pack_length = LENGTH.pack


class FrameError(ValueError):
    """The byte stream breaks doozer's framing; the connection must go."""


class FrameTooLarge(FrameError):
    """A frame header announced more than the reader's ``max_frame``."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the limit of {limit}")
        self.length = length
        self.limit = limit


class MalformedFrame(FrameError):
    """A frame's body does not parse as the expected message."""


class FrameReader:
    """Complete frame bodies out of a byte stream; see the module docstring."""

    __slots__ = ("_buf", "_pos", "_max", "_oversized")

    def __init__(self, max_frame: int) -> None:
        if max_frame < 0:
            raise ValueError(f"max_frame must be >= 0, not {max_frame}")
        self._buf = bytearray()
        self._pos = 0
        self._max = max_frame
        self._oversized: FrameTooLarge | None = None

    @property
    def max_frame(self) -> int:
        """The largest body this reader accepts."""
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete body, or None; raises FrameTooLarge."""
        if self._oversized is not None:
            raise self._oversized
        buf = self._buf
        pos = self._pos
        size = len(buf)
        if size - pos < HEADER_SIZE:
            return None
        (length,) = _unpack_length(buf, pos)
        if length > self._max:
            self._oversized = FrameTooLarge(length, self._max)
            raise self._oversized
        end = pos + HEADER_SIZE + length
        if end > size:
            return None
        body = bytes(buf[pos + HEADER_SIZE:end])
        if end == size:
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        return body

    def has_frame(self) -> bool:
        """True when ``next_frame()`` would return a body or raise."""
        if self._oversized is not None:
            return True
        available = len(self._buf) - self._pos
        if available < HEADER_SIZE:
            return False
        length: int = _unpack_length(self._buf, self._pos)[0]
        return length > self._max or available - HEADER_SIZE >= length

    def clear(self) -> None:
        """Drop everything buffered (the connection is going away)."""
        self._buf = bytearray()
        self._pos = 0


def frame_body(body: bytes) -> bytes:
    """``body`` with its length header."""
    return _pack_length(len(body)) + body


def frame_tagged(tag: int, untagged: bytes) -> bytes:
    """The frame of a message whose ``tag`` (field 1, int32) is ``tag`` and
    whose other fields serialize to ``untagged``.

    Protobuf writes known fields in field-number order, so this equals
    ``frame(message)`` for the message with the tag set; a client can
    serialize a request once and frame it under many tags.
    """
    field = _tag_field(tag)
    return _pack_length(len(field) + len(untagged)) + field + untagged


def _tag_field(tag: int) -> bytes:
    """Key of field 1 (varint) and ``tag`` as an int32 varint."""
    if 0 <= tag < 0x4000:          # the common case, without a loop
        if tag < 0x80:
            return bytes((0x08, tag))
        return bytes((0x08, (tag & 0x7F) | 0x80, tag >> 7))
    value = tag & 0xFFFFFFFFFFFFFFFF      # int32 varints sign-extend to 64 bits
    key_and_varint = [0x08]
    while value > 0x7F:
        key_and_varint.append((value & 0x7F) | 0x80)
        value >>= 7
    key_and_varint.append(value)
    return bytes(key_and_varint)


def frame(message: Message | RequestMessage | ResponseMessage) -> bytes:
    """A message serialized with its length header."""
    body = message.SerializeToString()
    return _pack_length(len(body)) + body


def parse_request(body: bytes) -> RequestMessage:
    """The Request in a frame body; raises MalformedFrame."""
    return cast(RequestMessage, _parse(Request, body))


def parse_response(body: bytes) -> ResponseMessage:
    """The Response in a frame body; raises MalformedFrame."""
    return cast(ResponseMessage, _parse(Response, body))


def _parse(cls: type[Message], body: bytes) -> Message:
    message = cls()
    try:
        message.ParseFromString(body)
    except Exception:  # protobuf raises DecodeError, and others on odd input
        raise MalformedFrame(f"{cls.DESCRIPTOR.name.lower()} frame does not parse") from None
    return message


def read_responses(reader: FrameReader,
                   data: bytes | bytearray | memoryview) -> list[ResponseMessage]:
    """Feed ``data`` to ``reader``; every complete Response now in it.

    Raises FrameError (FrameTooLarge or MalformedFrame): the caller must
    drop the connection.
    """
    reader.feed(data)
    out: list[ResponseMessage] = []
    while (body := reader.next_frame()) is not None:
        out.append(cast(ResponseMessage, _parse(Response, body)))
    return out
