"""What ``/metrics`` exports: the catalogue and the collector.

Conventions (Prometheus'; tests/test_metrics_names.py checks them on a
scrape): every name starts ``doozer_``; counters end ``_total``; durations
are ``_seconds`` histograms; every sample has a ``node`` label (the node's
name), so one dashboard serves a whole cluster. ``CATALOGUE`` lists every
family this module can export (docs/operations.md has the same table;
contrib/grafana/doozertw.json uses only these names).

Figures are read at scrape time from the node (``node.metrics()``), its
cluster view (doozertw.status.ClusterView; a replicated member adds
RaftFigures) and the web port; only the proposal latency histogram is fed
as writes finish (``Node.proposal_observers``).
"""

from __future__ import annotations

import attrs
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily)

from doozertw import __version__
from doozertw.status import CANDIDATE, DURATION_BUCKETS, FOLLOWER, LEADER, LEARNER

ROLES = (LEADER, FOLLOWER, CANDIDATE, LEARNER)

GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"


@attrs.frozen
class Family:
    """One exported family: ``name`` as exposed (a counter's with
    ``_total``), its type, its help text and its labels besides ``node``."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()


def _f(name, type_, help_, *labels):
    return Family(name, type_, help_, labels)


CATALOGUE = (
    # the store and its clients
    _f("doozer_revision", GAUGE, "Revision of the store applied on this node."),
    _f("doozer_files", GAUGE, "Files in the store."),
    _f("doozer_watchers", GAUGE, "Watches registered on the store."),
    _f("doozer_leases", GAUGE, "Leases in the store."),
    _f("doozer_connections", GAUGE, "Open client-port connections."),
    _f("doozer_web_connections", GAUGE, "Open websocket and streamed-watch connections."),
    _f("doozer_reads_total", COUNTER, "Read requests served."),
    _f("doozer_writes_total", COUNTER, "Writes proposed (every port)."),
    _f("doozer_write_errors_total", COUNTER,
       "Writes answered with an error code (REV_MISMATCH, ISDIR, ...)."),
    _f("doozer_write_failures_total", COUNTER,
       "Writes that got no outcome (no quorum, node stopping): unknown whether applied."),
    _f("doozer_proposal_latency_seconds", HISTOGRAM,
       "Seconds from proposing a write to its outcome."),
    # consensus
    _f("doozer_term", GAUGE, "Current Raft term."),
    _f("doozer_is_leader", GAUGE, "1 if this node is the leader."),
    _f("doozer_role", GAUGE, "1 for this node's current role, 0 for the others.", "role"),
    _f("doozer_has_quorum", GAUGE, "1 if this node can commit writes."),
    _f("doozer_leader_changes_total", COUNTER, "Leader changes seen by this node."),
    _f("doozer_raft_commit_index", GAUGE, "Raft commit index known to this node."),
    _f("doozer_raft_applied_index", GAUGE, "Raft index applied to this node's store."),
    _f("doozer_raft_last_index", GAUGE, "Last index of this node's Raft log."),
    _f("doozer_proposals_pending", GAUGE, "Proposals awaiting their outcome."),
    _f("doozer_read_index_rounds_total", COUNTER,
       "ReadIndex rounds started for linearizable reads."),
    # storage
    _f("doozer_snapshot_index", GAUGE, "Raft index of the latest snapshot."),
    _f("doozer_snapshot_duration_seconds", HISTOGRAM,
       "Seconds to take a snapshot, from serializing the store to it being durable."),
    _f("doozer_snapshots_received_total", COUNTER, "Snapshots received from a leader."),
    _f("doozer_wal_fsyncs_total", COUNTER, "fsyncs of the write-ahead log and snapshots."),
    _f("doozer_wal_fsync_duration_seconds", HISTOGRAM,
       "Seconds each fsync of the data directory took."),
    _f("doozer_wal_written_bytes_total", COUNTER, "Bytes written to the data directory."),
    _f("doozer_writes_refused", GAUGE, "1 while writes are refused (disk full or failed)."),
    # peers
    _f("doozer_peer_up", GAUGE, "1 while the link to the peer is up.", "peer"),
    _f("doozer_peer_rtt_seconds", GAUGE, "Last round-trip time to the peer.", "peer"),
    _f("doozer_peer_queued_messages", GAUGE, "Messages queued for the peer.", "peer"),
    _f("doozer_peer_sent_messages_total", COUNTER, "Messages sent to the peer.", "peer"),
    _f("doozer_peer_sent_bytes_total", COUNTER, "Bytes sent to the peer.", "peer"),
    _f("doozer_peer_received_messages_total", COUNTER,
       "Messages received from the peer.", "peer"),
    _f("doozer_peer_received_bytes_total", COUNTER, "Bytes received from the peer.", "peer"),
    _f("doozer_peer_dropped_messages_total", COUNTER,
       "Messages to the peer dropped by its full send queue.", "peer"),
    _f("doozer_peer_connects_total", COUNTER, "Links to the peer established.", "peer"),
    _f("doozer_peer_connect_failures_total", COUNTER,
       "Attempts to link to the peer that failed.", "peer"),
    _f("doozer_build_info", GAUGE, "Version of this node (always 1).", "version"),
)

BY_NAME = {f.name: f for f in CATALOGUE}


class _Emitter:
    """Builds the families of one scrape, every one labelled ``node``."""

    def __init__(self, node_name):
        self.node = node_name
        self.families = []

    def one(self, name, value, **labels):
        self.many(name, [(labels, value)])

    def many(self, name, rows):
        """``rows``: (extra labels dict, value) pairs; a family with no row
        is exported empty (its HELP and TYPE only)."""
        spec = BY_NAME[name]
        labels = ["node", *spec.labels]
        if spec.type == COUNTER:
            family = CounterMetricFamily(name[:-len("_total")], spec.help, labels=labels)
        else:
            family = GaugeMetricFamily(name, spec.help, labels=labels)
        for extra, value in rows:
            family.add_metric([self.node, *(extra[k] for k in spec.labels)], value)
        self.families.append(family)

    def histogram(self, name, hist):
        """``hist``: a doozertw.status.Histogram."""
        family = HistogramMetricFamily(name, BY_NAME[name].help, labels=["node"])
        buckets = [(_bound(b), n) for b, n in hist.buckets]
        family.add_metric([self.node], buckets, hist.sum)
        self.families.append(family)


def _bound(value):
    return "+Inf" if value == float("inf") else repr(float(value))


class NodeCollector:
    """Reads the node, its cluster view and the web port at scrape time."""

    def __init__(self, api):
        self.api = api

    def describe(self):
        return []

    def collect(self):
        node, api = self.api.node, self.api
        view = api.status()
        out = _Emitter(node.name)
        self._store(out, node.metrics(), api)
        self._consensus(out, node.name, view)
        self._storage(out, view)
        self._peers(out, view)
        out.one("doozer_build_info", 1, version=__version__)
        return out.families

    @staticmethod
    def _store(out, figures, api):
        out.one("doozer_revision", figures.rev)
        out.one("doozer_files", figures.files)
        out.one("doozer_watchers", figures.watchers)
        out.one("doozer_leases", figures.leases)
        out.one("doozer_connections", figures.connections)
        out.one("doozer_web_connections", api.connections)
        out.one("doozer_reads_total", figures.reads)
        out.one("doozer_writes_total", figures.writes)
        out.one("doozer_write_errors_total", figures.write_errors)
        out.one("doozer_write_failures_total", figures.write_failures)

    @staticmethod
    def _consensus(out, me, view):
        raft = view.raft
        member = view.member(me)
        role = raft.role if raft is not None else (member.role if member else "")
        out.one("doozer_term", view.term)
        out.one("doozer_is_leader", 1 if view.leader == me else 0)
        roles = ROLES if role in ROLES or not role else ROLES + (role,)
        out.many("doozer_role", [({"role": r}, 1 if r == role else 0) for r in roles])
        out.one("doozer_has_quorum", 1 if view.has_quorum else 0)
        out.one("doozer_leader_changes_total", view.leader_changes)
        if raft is None:
            return
        out.one("doozer_raft_commit_index", raft.commit)
        out.one("doozer_raft_applied_index", raft.applied)
        out.one("doozer_raft_last_index", raft.last_index)
        out.one("doozer_proposals_pending", raft.proposals_pending)
        out.one("doozer_read_index_rounds_total", raft.read_rounds)

    @staticmethod
    def _storage(out, view):
        st, raft = view.storage, view.raft
        if raft is not None:
            out.one("doozer_snapshots_received_total", raft.snapshots_received)
            if raft.snapshot_seconds is not None:
                out.histogram("doozer_snapshot_duration_seconds", raft.snapshot_seconds)
            if raft.fsync_seconds is not None:
                out.histogram("doozer_wal_fsync_duration_seconds", raft.fsync_seconds)
        if st is None:
            return
        out.one("doozer_wal_fsyncs_total", st.fsyncs)
        out.one("doozer_wal_written_bytes_total", st.bytes_written)
        out.one("doozer_snapshot_index", st.snapshot_index)
        out.one("doozer_writes_refused", 1 if st.writes_refused else 0)

    @staticmethod
    def _peers(out, view):
        out.many("doozer_peer_rtt_seconds", [({"peer": p}, s) for p, s in view.peer_rtt])
        peers = view.raft.peers if view.raft is not None else ()
        if not peers:
            return
        per_peer = (
            ("doozer_peer_up", lambda s: 1 if s.state == "up" else 0),
            ("doozer_peer_queued_messages", lambda s: s.queued_messages),
            ("doozer_peer_sent_messages_total", lambda s: s.sent_messages),
            ("doozer_peer_sent_bytes_total", lambda s: s.sent_bytes),
            ("doozer_peer_received_messages_total", lambda s: s.received_messages),
            ("doozer_peer_received_bytes_total", lambda s: s.received_bytes),
            ("doozer_peer_dropped_messages_total", lambda s: s.dropped),
            ("doozer_peer_connects_total", lambda s: s.connects),
            ("doozer_peer_connect_failures_total", lambda s: s.failures),
        )
        for name, value in per_peer:
            out.many(name, [({"peer": s.name}, value(s)) for s in peers])


class Metrics:
    """A node's metrics registry (never the global one)."""

    def __init__(self, api):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(api))
        self.proposal_latency = Histogram(
            "doozer_proposal_latency_seconds", BY_NAME["doozer_proposal_latency_seconds"].help,
            labelnames=["node"], registry=self.registry,
            buckets=DURATION_BUCKETS).labels(node=api.node.name)

    def observe_proposal(self, seconds):
        self.proposal_latency.observe(max(0.0, seconds))

    def render(self):
        return generate_latest(self.registry)


__all__ = ["CATALOGUE", "COUNTER", "Family", "GAUGE", "HISTOGRAM", "Metrics", "NodeCollector"]
