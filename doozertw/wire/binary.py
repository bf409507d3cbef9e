"""The binary primitives of doozertw's own codecs (Raft messages, peer
envelopes, on-disk records): big-endian, length-prefixed, deterministic.

- ``u8``/``u16``/``u32``/``u64``: unsigned integers of that width;
- ``boolean``: one byte, 0 or 1 (any other byte is malformed);
- ``text``: u16 length + UTF-8; ``blob``: u32 length + raw bytes.

``Writer`` collects parts; ``getvalue()`` joins them. Writing a value out
of range raises ``struct.error``. ``Reader`` reads the same layout from a
position and raises ``error`` (a ValueError subclass; ``DecodeError``
unless a codec's subclass names its own) for truncated input, a bad
boolean or bad UTF-8, and nothing else. Subclasses add composite fields
(a Raft codec's entries, say) on top of these.
"""

from __future__ import annotations

import struct
from typing import ClassVar, Final

U16: Final = struct.Struct(">H")
U32: Final = struct.Struct(">I")
U64: Final = struct.Struct(">Q")

_TRUE = b"\x01"
_FALSE = b"\x00"


class DecodeError(ValueError):
    """The bytes do not hold what the reader expected."""


class Writer:
    """Encodes primitives into a list of parts; see the module docstring."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def raw(self, data: bytes) -> None:
        self.parts.append(bytes(data))

    def u8(self, value: int) -> None:
        self.parts.append(bytes((value,)))

    def u16(self, value: int) -> None:
        self.parts.append(U16.pack(value))

    def u32(self, value: int) -> None:
        self.parts.append(U32.pack(value))

    def u64(self, value: int) -> None:
        self.parts.append(U64.pack(value))

    def boolean(self, value: bool) -> None:
        self.parts.append(_TRUE if value else _FALSE)

    def text(self, value: str) -> None:
        raw = value.encode("utf-8")
        self.parts.append(U16.pack(len(raw)))
        self.parts.append(raw)

    def blob(self, value: bytes) -> None:
        self.parts.append(U32.pack(len(value)))
        self.parts.append(bytes(value))

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class Reader:
    """Decodes primitives from ``data`` starting at ``pos``."""

    error: ClassVar[type[ValueError]] = DecodeError
    """The exception raised for malformed input."""

    what: ClassVar[str] = "data"
    """What is being read, for error messages ("truncated <what>")."""

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.data = memoryview(data)
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> memoryview:
        """The next ``n`` bytes; raises ``error`` if fewer are left."""
        end = self.pos + n
        if end > len(self.data):
            raise self.error(f"truncated {self.what}")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def rest(self) -> bytes:
        """Every byte from here to the end."""
        chunk = bytes(self.data[self.pos:])
        self.pos = len(self.data)
        return chunk

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u16(self) -> int:
        return int(U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(U64.unpack(self.take(8))[0])

    def boolean(self) -> bool:
        byte = self.u8()
        if byte > 1:
            raise self.error(f"bad boolean byte {byte} in {self.what}")
        return byte == 1

    def text(self) -> str:
        raw = self.take(self.u16())
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"bad utf-8 in {self.what}") from exc

    def blob(self) -> bytes:
        return bytes(self.take(self.u32()))

    def expect_end(self) -> None:
        """Raise ``error`` unless every byte was read."""
        if self.pos != len(self.data):
            raise self.error(f"trailing bytes in {self.what}")
