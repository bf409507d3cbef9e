"""Write-through for the project's plain TCP connections.

Twisted buffers every ``transport.write`` and sends it on the reactor's
next pass: the descriptor is registered for writing (an ``epoll_ctl``),
the poll reports it writable, the bytes go out, and the registration is
removed (another ``epoll_ctl``). For the small messages this project
sends (an answer, a watch event, a Raft message) that round costs about
three times the ``send`` itself, and delays the bytes by one reactor pass.

``write_through(transport)`` makes a plain TCP transport send at once
when nothing is queued before the bytes: ``socket.send`` of the whole
write; whatever the kernel does not take (a full socket buffer, an error)
goes through Twisted's own buffered path, which keeps the order, the
producer flow control and the handling of errors and closing. TLS
transports and anything that is not Twisted's TCP are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet import tcp


class _WriteThrough:
    """Mixin over a Twisted TCP connection: ``write`` sends at once when
    Twisted's buffers are empty and the connection is open and not TLS."""

    def write(self, data: bytes) -> None:
        t: Any = self
        if (data and not t._tempDataLen and t.offset == len(t.dataBuffer) and t.connected
                and not t.disconnecting and not t._writeDisconnected and not t.TLS
                and isinstance(data, bytes)):
            try:
                sent = t.socket.send(data)
            except OSError:
                sent = 0        # the buffered path meets it again and closes as Twisted does
            if sent >= len(data):
                return
            data = data[sent:]
        super().write(data)  # type: ignore[misc]

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        self.write(b"".join(iovec))


class WriteThroughServer(_WriteThrough, tcp.Server):
    """tcp.Server with write-through."""


class WriteThroughClient(_WriteThrough, tcp.Client):
    """tcp.Client with write-through."""


_SWAP = {tcp.Server: WriteThroughServer, tcp.Client: WriteThroughClient}


def write_through(transport: Any) -> bool:
    """Give ``transport`` write-through if it is exactly Twisted's plain TCP
    server or client connection; True if it now has it (or had it)."""
    if isinstance(transport, _WriteThrough):
        return True
    swapped = _SWAP.get(type(transport))
    if swapped is None or getattr(transport, "TLS", False):
        return False
    transport.__class__ = swapped
    return True


__all__ = ["WriteThroughClient", "WriteThroughServer", "write_through"]
