"""The replicated cluster: Raft driven on a reactor, any node accepts writes.

- ``driver``: ClusterDriver runs a pure RaftNode (ticks, Ready handling,
  applying committed entries to the store);
- ``proposer``: ReplicatedProposer, the Node's proposer (batching,
  forwarding to the leader, bounded waits);
- ``reads``: ReadBarrier, batched ReadIndex for linearizable reads;
- ``membership``: /ctl/cal and /ctl/node drive the Raft configuration;
- ``bootstrap``: found a cluster or join one as a learner;
- ``member``: ClusterMember assembles all of the above around a Store;
- ``service``: the twistd service (PeerTransport, --peers, --attach);
- ``envelope``: the payload codec (Raft messages and our envelopes).

See docs/cluster.md.
"""
