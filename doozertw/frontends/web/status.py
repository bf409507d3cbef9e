"""Cluster status as the web port sees it: an interface the node fills.

The web port asks a *status source* for a ``ClusterView`` whenever it shows
or exports the cluster. A node that takes part in consensus provides its own
source by defining ``node.cluster_status()`` returning a ``ClusterView``;
``status_source(node)`` uses it when present and otherwise describes a
cluster of one (the node itself: leader, term 0, applied = store.rev,
healthy, quorum).
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
        }


class SingleNodeStatus:
    """The status source of a node that is a cluster by itself."""

    def __init__(self, node):
        self._node = node

    def __call__(self):
        node = self._node
        me = MemberStatus(name=node.name, role=LEADER, term=0,
                          applied=node.store.rev, healthy=True)
        return ClusterView(name=node.cluster_name, self_name=node.name,
                           leader=node.name, term=0, has_quorum=True,
                           members=(me,), leader_changes=0, peer_rtt=())


def status_source(node):
    """A zero-argument callable returning the node's current ClusterView."""
    provided = getattr(node, "cluster_status", None)
    if callable(provided):
        return provided
    return SingleNodeStatus(node)
