"""Length-prefixed frames on a peer connection.

A frame is a 4-byte big-endian unsigned length followed by that many bytes
of body. The body's first byte is its ``FrameKind``; the rest is the
kind's content. A length of zero, a length above the decoder's maximum or
an unknown kind is a framing violation: the connection must be closed.

This module is pure: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import enum
import struct

_LENGTH = struct.Struct(">I")
HEADER_SIZE = _LENGTH.size


class FramingError(ValueError):
    """The peer broke the framing rules; the connection must be closed."""


class FrameKind(enum.IntEnum):
    """The first byte of every frame body."""

    HELLO = 1     # handshake: both directions, first frame of each side
    REFUSE = 2    # handshake refused; the sender then closes
    DATA = 3      # one opaque payload
    PING = 4      # dialer -> acceptor: 8-byte float timestamp
    PONG = 5      # acceptor -> dialer: the PING's content echoed
    AUTH = 6      # handshake: dialer -> acceptor, its secret proof (auth.py)


def frame_parts(kind: FrameKind, content: bytes, trailer: bytes = b"") -> list[bytes]:
    """The byte strings that make one frame, for ``writeSequence``; a
    ``trailer`` (an authentication tag) ends the body after the content.

    Returned as parts so a large payload is never copied.
    """
    head = _LENGTH.pack(len(content) + len(trailer) + 1) + bytes((kind,))
    return [head, content, trailer] if trailer else [head, content]


def encode_frame(kind: FrameKind, content: bytes) -> bytes:
    """One whole frame as a single byte string."""
    return b"".join(frame_parts(kind, content))


class FrameDecoder:
    """Splits a byte stream into (kind, content) frames.

    ``max_frame`` bounds the body length (kind byte included) and may be
    changed between frames, e.g. raised once a handshake has succeeded:
    ``next_frame`` checks each length against the limit in force when that
    frame is taken. After a FramingError the decoder must not be used again.
    """

    def __init__(self, max_frame: int):
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._offset = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet taken as part of a frame."""
        return len(self._buffer) - self._offset

    def push(self, data: bytes) -> None:
        """Add received bytes."""
        if self._offset and self._offset == len(self._buffer):
            self._buffer.clear()
            self._offset = 0
        self._buffer += data

    def next_frame(self) -> tuple[FrameKind, bytes] | None:
        """The next complete frame, or None until more bytes arrive."""
        buf = self._buffer
        start = self._offset
        if len(buf) - start < HEADER_SIZE:
            self._compact()
            return None
        (length,) = _LENGTH.unpack_from(buf, start)
        self._check_length(length)
        end = start + HEADER_SIZE + length
        if len(buf) < end:
            self._compact()
            return None
        frame = self._parse_body(buf, start + HEADER_SIZE, end)
        self._offset = end
        return frame

    def feed(self, data: bytes) -> list[tuple[FrameKind, bytes]]:
        """``push`` then take every complete frame, in order."""
        self.push(data)
        frames = []
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
        return frames

    def _compact(self) -> None:
        if self._offset:
            del self._buffer[:self._offset]
            self._offset = 0

    def _check_length(self, length: int) -> None:
        if length == 0:
            raise FramingError("empty frame")
        if length > self.max_frame:
            raise FramingError(
                f"frame of {length} bytes exceeds the limit of {self.max_frame}")

    @staticmethod
    def _parse_body(buf: bytearray, start: int, end: int):
        try:
            kind = FrameKind(buf[start])
        except ValueError:
            raise FramingError(f"unknown frame kind {buf[start]}") from None
        return kind, bytes(buf[start + 1:end])
