"""TCP_NODELAY for the project's connections.

Every protocol here sends small, latency-bound messages (requests,
answers, Raft messages). With Nagle's algorithm on, a second small write
waits for the first one's acknowledgement, which the peer delays by up to
40 ms (Linux's delayed ACK): one such wait on a forwarded write added
~45 ms to its latency. Twisted leaves Nagle on; this turns it off.
"""

from __future__ import annotations

from typing import Any


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


__all__ = ["disable_nagle"]
