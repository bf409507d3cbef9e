"""What a node knows of its cluster: the view the web port, /metrics and
the health checks read. A clustered node supplies ``node.cluster_status()``
returning a ClusterView (doozertw.cluster.status); a node alone is described
by doozertw.frontends.web.status.SingleNodeStatus.
"""

import bisect
import threading

import attrs

LEADER = "leader"
FOLLOWER = "follower"
CANDIDATE = "candidate"
LEARNER = "learner"


@attrs.frozen
class MemberStatus:
    """One member as seen from this node."""

    name: str
    role: str
    term: int
    applied: int
    healthy: bool
    addr: str = ""


@attrs.frozen
class StorageView:
    """This node's Raft storage: ``durable`` (a data directory) or memory;
    fsyncs and bytes written since start; the latest snapshot's index; the
    last log index; whether writes are refused for a full or failed disk."""

    durable: bool
    fsyncs: int = 0
    bytes_written: int = 0
    snapshot_index: int = 0
    last_index: int = 0
    writes_refused: str = ""


DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0, 10.0)


@attrs.frozen
class Histogram:
    """A copy of a Durations: ``buckets`` holds (upper bound, cumulative
    count) pairs in increasing order, the last bound ``inf``."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


class Durations:
    """Seconds observed by whoever owns a clock (a pure core never does):
    ``observe(seconds)`` may be called from any thread (the WAL writer
    thread times its fsyncs); ``snapshot()`` copies it for a reader.
    Negative durations (a clock stepped back) count as 0."""

    def __init__(self, buckets=DURATION_BUCKETS):
        self.bounds = tuple(sorted(buckets)) + (float("inf"),)
        self._counts = [0] * len(self.bounds)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        at = bisect.bisect_left(self.bounds, seconds)
        with self._lock:
            self._counts[at] += 1
            self._sum += seconds

    def snapshot(self) -> Histogram:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, n in zip(self.bounds, counts):
            running += n
            cumulative.append((bound, running))
        return Histogram(buckets=tuple(cumulative), count=running, sum=total)


@attrs.frozen
class RaftFigures:
    """This member's consensus and replication figures, for /metrics.

    ``role``: as in MemberStatus; ``commit``, ``applied``, ``last_index``:
    Raft log indexes; ``read_rounds``: ReadIndex rounds started;
    ``proposals_pending``: proposals awaiting their outcome;
    ``snapshots_received``: snapshots streamed in from a leader;
    ``snapshot_seconds``: time to take each snapshot (serialize the store,
    compact, make it durable); ``fsync_seconds``: each fsync of the data
    directory (None in memory); ``peers``: doozertw.peer.transport.PeerStats
    of each peer link (empty without a transport).
    """

    role: str
    commit: int
    applied: int
    last_index: int
    read_rounds: int = 0
    proposals_pending: int = 0
    snapshots_received: int = 0
    snapshot_seconds: Histogram | None = None
    fsync_seconds: Histogram | None = None
    peers: tuple = ()


@attrs.frozen
class ClusterView:
    """What this node knows about its cluster.

    - ``leader``: name of the current leader, or "" when none is known.
    - ``has_quorum``: this node can commit writes now.
    - ``leader_changes``: leaders this node has seen since it started.
    - ``peer_rtt``: (peer name, last round-trip time in seconds) pairs.
    - ``raft``: RaftFigures of a replicated member (None for a node alone);
      /metrics reads them, the JSON view does not carry them.
    """

    name: str
    self_name: str
    leader: str
    term: int
    has_quorum: bool
    members: tuple = ()
    leader_changes: int = 0
    peer_rtt: tuple = ()
    storage: StorageView | None = None
    raft: RaftFigures | None = None

    def member(self, name):
        for m in self.members:
            if m.name == name:
                return m
        return None

    def to_json(self):
        return {
            "cluster": self.name,
            "self": self.self_name,
            "leader": self.leader,
            "term": self.term,
            "has_quorum": self.has_quorum,
            "leader_changes": self.leader_changes,
            "nodes": [attrs.asdict(m) for m in self.members],
            "peer_rtt": {name: rtt for name, rtt in self.peer_rtt},
            "storage": None if self.storage is None else attrs.asdict(self.storage),
        }
