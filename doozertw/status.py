"""What a node knows of its cluster: the view the web port, /metrics and
the health checks read. A clustered node supplies ``node.cluster_status()``
returning a ClusterView (doozertw.cluster.status); a node alone is described
by doozertw.frontends.web.status.SingleNodeStatus.
"""

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


@attrs.frozen
class ClusterView:
    """What this node knows about its cluster.

    - ``leader``: name of the current leader, or "" when none is known.
    - ``has_quorum``: this node can commit writes now.
    - ``leader_changes``: leaders this node has seen since it started.
    - ``peer_rtt``: (peer name, last round-trip time in seconds) pairs.
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
