"""Test support for the client-port front ends: a ``TextProtocol``
connection on a StringTransport and a Clock (``Conn``), a reader of the text
protocol's reply stream (``parse_units``), and protobuf varints for
hand-built doozer frames (``varint``)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from doozertw.frontends.access import Secrets
from doozertw.frontends.text import TextProtocol
from doozertw.limits import Limits


class Malformed(Exception):
    """The reply stream is not well formed."""


def _take_line(data, pos):
    end = data.find(b"\r\n", pos)
    if end == -1:
        raise Malformed(f"no CRLF after {data[pos:pos + 40]!r}")
    return data[pos:end], end + 2


def _take_value(data, pos, length):
    if data[pos + length:pos + length + 2] != b"\r\n":
        raise Malformed(f"value of {length} bytes not followed by CRLF")
    return data[pos:pos + length], pos + length + 2


LISTS = (b"DIR", b"HELP", b"TTL", b"LEASES", b"TXN", b"SRVR", b"STATS", b"MNTR", b"CONS")
"""Replies ``OK <KIND> ... <n>`` followed by n lines."""


def parse_units(data):
    """Split a reply stream into units: (header words, payload).

    Payload is bytes for value units, a list of lines for LISTS kinds, a
    list of (words, bytes) for WALK, else None. Raises Malformed.
    """
    units, pos = [], 0
    while pos < len(data):
        line, pos = _take_line(data, pos)
        w = line.split(b" ")
        payload = None
        if w[:2] == [b"OK", b"VALUE"] or w[:2] == [b"OK", b"EVENT"] or (
                w[0] == b"EVENT" and w[2] != b"ERROR"):
            payload, pos = _take_value(data, pos, int(w[-1]))
        elif w[0] == b"OK" and len(w) > 2 and w[1] in LISTS:
            payload = []
            for _ in range(int(w[-1])):
                item, pos = _take_line(data, pos)
                payload.append(item)
        elif w[:2] == [b"OK", b"WALK"]:
            payload = []
            for _ in range(int(w[-1])):
                item, pos = _take_line(data, pos)
                value, pos = _take_value(data, pos, int(item.split(b" ")[-1]))
                payload.append((item.split(b" "), value))
        elif w[0] not in (b"OK", b"ERR", b"EVENT"):
            raise Malformed(f"unknown unit {line!r}")
        units.append((w, payload))
    return units


class Conn:
    """One TextProtocol connection on a StringTransport."""

    def __init__(self, node, clock=None, secrets=None, limits=None):
        self.clock = clock or Clock()
        self.limits = limits or Limits()
        self.proto = TextProtocol(node, secrets or Secrets(), self.limits, self.clock)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def send(self, data):
        self.proto.dataReceived(data)
        return self

    def raw(self):
        self.clock.advance(0)        # later reactor turns (limits.max_batch per turn)
        out = self.transport.value()
        self.transport.clear()
        return out

    def units(self):
        return parse_units(self.raw())

    def lines(self):
        return [b" ".join(w) for w, _ in self.units()]

    @property
    def closed(self):
        return self.transport.disconnecting


def varint(n: int) -> bytes:
    """The protobuf varint of ``n`` (negative: as a 64-bit two's complement)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)
