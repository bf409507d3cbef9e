"""The peer transport: framed, handshaken TCP links between cluster nodes.

See docs/peer.md. The public surface is PeerTransport, PeerLimits,
PeerStats, FaultInjector / FaultRule / Direction and LinkState.
"""

from doozertw.peer.faults import ANY, Direction, FaultInjector, FaultRule, partition
from doozertw.peer.limits import PeerLimits
from doozertw.peer.link import LinkState
from doozertw.peer.transport import PayloadTooLarge, PeerStats, PeerTransport

__all__ = [
    "ANY", "Direction", "FaultInjector", "FaultRule", "LinkState",
    "PayloadTooLarge", "PeerLimits", "PeerStats", "PeerTransport", "partition",
]
