"""TCP_NODELAY for the project's connections.

Every protocol here sends small, latency-bound messages (requests,
answers, Raft messages). With Nagle's algorithm on, a second small write
waits for the first one's acknowledgement, which the peer delays by up to
40 ms (Linux's delayed ACK): one such wait on a forwarded write added
~45 ms to its latency. Twisted leaves Nagle on; this turns it off.
``tune_tcp`` also gives plain TCP transports write-through.
"""

from __future__ import annotations

from typing import Any

from doozertw.writethrough import write_through


def disable_nagle(transport: Any) -> bool:
    """Set TCP_NODELAY on ``transport`` if it is TCP (TLS over TCP
    included); True if it was set. Other transports are left as they are."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is None:
        return False
    try:
        set_no_delay(True)
    except OSError:
        return False
    return True


def tune_tcp(transport: Any) -> None:
    """What every connection of the project gets: TCP_NODELAY, and
    write-through on plain TCP (doozertw.writethrough)."""
    disable_nagle(transport)
    write_through(transport)


__all__ = ["disable_nagle", "tune_tcp"]
