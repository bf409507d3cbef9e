"""Cluster status as the web port sees it: an interface the node fills.

The web port asks a *status source* for a ``ClusterView`` whenever it shows
or exports the cluster. A node that takes part in consensus provides its own
source by defining ``node.cluster_status()`` returning a ``ClusterView``;
``status_source(node)`` uses it when present and otherwise describes a
cluster of one (the node itself: leader, term 0, applied = store.rev,
healthy, quorum).
"""

from doozertw.status import (  # noqa: F401  (re-exported)
    CANDIDATE, FOLLOWER, LEADER, LEARNER, ClusterView, MemberStatus)


class SingleNodeStatus:
    """The status source of a node that is a cluster by itself."""

    def __init__(self, node):
        self._node = node

    def __call__(self):
        node = self._node
        me = MemberStatus(name=node.name, role=LEADER, term=0,
                          applied=node.applied_rev, healthy=True)
        return ClusterView(name=node.cluster_name, self_name=node.name,
                           leader=node.name, term=0, has_quorum=True,
                           members=(me,), leader_changes=0, peer_rtt=())


def status_source(node):
    """A zero-argument callable returning the node's current ClusterView."""
    provided = getattr(node, "cluster_status", None)
    if callable(provided):
        return provided
    return SingleNodeStatus(node)
