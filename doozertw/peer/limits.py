"""Tunable bounds and timings of the peer transport.

Every default is chosen deliberately:

- ``max_frame`` 64 MiB: the largest single frame (kind byte + payload). A
  Raft snapshot of a store of small values travels as one payload, so this
  bounds the snapshot size; a peer announcing a longer frame is cut off.
- ``max_handshake_frame`` 4 KiB: before a connection has identified itself
  it may send only small frames, so a stranger cannot make us buffer 64 MiB.
- ``max_queue_messages`` 4096 / ``max_queue_bytes`` 128 MiB: per-peer send
  queue bounds; the byte bound exceeds ``max_frame`` so one full-size
  snapshot always fits. When full, the oldest queued payloads are dropped.
- ``backoff_initial`` 50 ms doubling to ``backoff_max`` 2 s, with jitter:
  a restarted node is found again quickly, a dead one costs one dial
  attempt every 1-2 s.
- ``connect_timeout`` / ``handshake_timeout`` 5 s: a dial or handshake that
  takes longer is abandoned and retried.
- ``ping_interval`` 0.5 s, ``dead_after`` 3 s: the dialer pings its peer and
  measures the round-trip time; either side closes a connection on which
  nothing has been heard for ``dead_after`` seconds (a stopped process or a
  half-open connection), and the dialer reconnects.
"""

import attrs

MIB = 1024 * 1024


@attrs.frozen
class PeerLimits:
    """Bounds and timings for one PeerTransport (see module docstring)."""

    max_frame: int = 64 * MIB
    max_handshake_frame: int = 4096
    max_queue_messages: int = 4096
    max_queue_bytes: int = 128 * MIB
    backoff_initial: float = 0.05
    backoff_max: float = 2.0
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    ping_interval: float = 0.5
    dead_after: float = 3.0

    @property
    def max_payload(self) -> int:
        """Largest payload ``send`` accepts: a frame minus its kind byte."""
        return self.max_frame - 1
