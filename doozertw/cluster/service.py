"""The twistd side of a cluster node: PeerTransport, --peers and --attach.

``ClusterService`` owns a ClusterMember (whose ``node`` the front ends
serve) and the PeerTransport it talks through. On start it listens on the
peer port, then either probes the configured voters (found or join) or,
with ``attach``, asks a running member (its client address) for the peer
endpoints in /ctl/node/*/peer and joins as a learner. The node's
``cluster_status`` (doozertw.cluster.status) reads peer round trips and
link states from the PeerTransport. ``applied_every`` (seconds; off by
default, since each write is a new revision on every node) periodically
writes /ctl/node/<name>/applied; the web port's /v1/cluster shows live
applied revisions instead.

Peers are authenticated by the PeerTransport as ``peer_security`` says
(doozertw.peer.security); a node with peers must have it unless started
with ``--insecure-peers`` (loudly logged). Authenticated is not enough to
steer Raft: ``sender_allowed`` hands a payload to the member only if it is
a Probe, ProbeReply or JoinRequest (an authenticated joiner may ask), or
its sender is a MEMBER: a node named in the Raft configuration or among
the configured voters; a leader's replication messages from any
authenticated peer (a member that lags behind the entry adding a new
leader must still hear from it). A node that is not (yet) a member of a
configuration itself accepts any authenticated sender (it learns the
configuration from the leader that adds it).
"""

from __future__ import annotations

import os
import random
import socket

from twisted.application import service
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger

from doozertw.cluster import envelope as env
from doozertw.cluster.chunks import transport_link_view
from doozertw.cluster.driver import Timing
from doozertw.limits import DEFAULT_QUORUM_TIMEOUT
from doozertw.cluster.member import ClusterMember
from doozertw.consensus import messages as msg
from doozertw.consensus.messages import MESSAGE_TYPES
from doozertw.errors import DoozerError, ErrCode
from doozertw.peer import PeerTransport
from doozertw.peer.security import PeerSecurity
from doozertw.persist import allocator


HAND_OVER_GRACE = 0.2

OPEN_ENVELOPES = frozenset(
    env.APP + bytes([env.ENVELOPE_TYPES.index(t)])
    for t in (env.Probe, env.ProbeReply, env.JoinRequest))


# A leader's replication reaches a member that has not yet seen the entry
# adding that leader (it lags behind a promotion); refusing it would leave
# that member behind for good. Terms protect these messages: an outsider's
# stale term is answered with ours, and no vote is ever taken from one.
LEADER_PAYLOADS = frozenset(
    [env.RAFT + bytes([MESSAGE_TYPES.index(t)])
     for t in (msg.AppendEntries, msg.Heartbeat, msg.InstallSnapshot)]
    + [env.APP + bytes([env.ENVELOPE_TYPES.index(env.SnapshotChunk)])])


def sender_allowed(payload, sender, members, self_is_member):
    """May ``sender`` (an authenticated peer name) hand ``payload`` to the
    member? Votes, acknowledgements, Forwards and their replies only from
    ``members`` (names), or anyone while ``self_is_member`` is False; a
    leader's replication (LEADER_PAYLOADS), Probe, ProbeReply and
    JoinRequest from any authenticated peer."""
    head = bytes(payload[:2])
    if head in OPEN_ENVELOPES or head in LEADER_PAYLOADS:
        return True
    return not self_is_member or sender in members


def _timing(quorum_timeout, snapshot_entries, lease_reads=False, monotonic=None,
            raft_ticks=None):
    more = {} if snapshot_entries is None else {"compact_every": snapshot_entries}
    if raft_ticks is not None:
        more.update(zip(("tick", "election_ticks", "heartbeat_ticks"), raft_ticks))
    return Timing(quorum_timeout=quorum_timeout, lease_reads=lease_reads,
                  monotonic=monotonic, **more)


def dial_endpoint(address, default_host="127.0.0.1"):
    """A client endpoint string for a peer address: ``host:port`` or a
    server endpoint such as ``tcp:7046:interface=10.0.0.1`` becomes
    ``tcp:host=10.0.0.1:port=7046``; a client endpoint string is kept."""
    if "host=" in address:
        return address
    if address.startswith("tcp:") or address.startswith("tcp6:"):
        parts = address.split(":")
        port = next((p for p in parts[1:] if p.isdigit()), None)
        if port is None:
            port = next((p.split("=", 1)[1] for p in parts if p.startswith("port=")), None)
        host = next((p.split("=", 1)[1] for p in parts if p.startswith("interface=")),
                    default_host)
        if port is None:
            raise ValueError(f"no port in {address!r}")
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"tcp:host={host}:port={port}"
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not host:port or a tcp endpoint: {address!r}")
    return f"tcp:host={host or default_host}:port={port}"


class ClusterService(service.Service):
    """One cluster node under twistd; see the module docstring.

    ``voters``: {name: peer address} of the configured voters (this node
    included); ``attach``: a member's client address, or None;
    ``quorum_timeout``: seconds a write or linearizable read waits for a
    quorum; ``silent_voter_timeout``: seconds after which the leader demotes
    a voter it has not heard from (None: never).
    """

    log = Logger()

    def __init__(self, name, voters, peer_listen, store, *, cluster_name="local",
                 limits=None, reactor=None, silent_voter_timeout=None,
                 quorum_timeout=DEFAULT_QUORUM_TIMEOUT,
                 attach=None, secret=None, peer_advertise=None, applied_every=None,
                 storage_provider=None, snapshot_entries=None, on_fatal=None,
                 peer_security=None, on_start_failure=None, lease_reads=False,
                 monotonic=None, raft_ticks=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self._on_start_failure = on_start_failure
        self.name = name
        self.cluster_name = cluster_name
        self.peer_listen = peer_listen
        self.attach = attach
        self.secret = secret
        self.peer_security = peer_security if peer_security is not None else PeerSecurity()
        self.refused_payloads = 0
        self._refused_from = {}
        self.voter_endpoints = {n: dial_endpoint(a) for n, a in voters.items() if n != name}
        self.transport = None
        self._queued_peers = dict(self.voter_endpoints)
        advertised = peer_advertise or (voters.get(name) if name in voters else None)
        self.member = ClusterMember(
            name, () if attach else voters, store=store, reactor=reactor,
            rng=random.Random(), send=self._send, add_peer=self._add_peer,
            peer_addr=dial_endpoint(advertised or peer_listen), cluster_name=cluster_name,
            limits=limits,
            timing=_timing(quorum_timeout, snapshot_entries, lease_reads, monotonic,
                           raft_ticks),
            timeout=silent_voter_timeout, applied_every=applied_every,
            storage_provider=storage_provider, on_fatal=on_fatal or self._fatal,
            link_view=transport_link_view(lambda: self.transport),
            peer_stats=self._peer_stats)
        self._advertised = advertised is not None

    @property
    def node(self):
        return self.member.node

    def status(self):
        """ClusterMember.status() plus per-peer transport statistics."""
        summary = self.member.status()
        if self.transport is not None:
            summary["peers"] = {name: {"state": st.state, "rtt": st.rtt, "dropped": st.dropped}
                                for name, st in self.transport.stats().items()}
        return summary

    def _peer_stats(self):
        return self.transport.stats() if self.transport is not None else {}

    def set_client_addr(self, address):
        """The client address to publish in /ctl/node/<name>/addr."""
        self.member.set_client_addr(address)

    # -- transport -----------------------------------------------------------------

    def _send(self, name, payload):
        return self.transport.send(name, payload) if self.transport else False

    def _add_peer(self, name, endpoint):
        if self.transport is None:
            self._queued_peers[name] = endpoint
        else:
            self.transport.add_peer(name, endpoint)

    def _build_transport(self, cluster_name):
        self.transport = PeerTransport(self.name, cluster_name, {},
                                       on_message=self._receive, reactor=self.reactor,
                                       security=self.peer_security)
        for name, endpoint in self._queued_peers.items():
            self.transport.add_peer(name, endpoint)

    def _members(self):
        """(names allowed to steer Raft, whether this node is a member)."""
        driver = self.member.driver
        conf = driver.conf
        names = {env.name_of(m) for m in conf.members()} | set(self.member.voters)
        return names, driver.started and driver.member_id in conf.members()

    def _receive(self, sender, payload):
        """PeerTransport's on_message: authorise, then hand to the member."""
        names, is_member = self._members()
        if not sender_allowed(payload, sender, names, is_member):
            self.refused_payloads += 1
            count = self._refused_from[sender] = self._refused_from.get(sender, 0) + 1
            if count & (count - 1) == 0:  # 1st, 2nd, 4th, 8th, ...: no log flood
                self.log.warn("{node}: dropped a Raft message or Forward from non-member "
                              "{peer} ({count} so far)", node=self.name, peer=sender,
                              count=count)
            return
        if self.member.receive(sender, payload) is False and self.transport is not None:
            # an authenticated peer sent what does not decode: drop its link
            # (it reconnects and starts afresh) rather than keep a confused one
            self.transport.drop_inbound(sender)

    # -- lifecycle -------------------------------------------------------------------

    def startService(self):
        super().startService()
        allocator.tune()  # big snapshot buffers mapped apart, unmapped when freed
        if not self.peer_security.authenticated and self.peer_security.allow_unauthenticated:
            self.log.warn(
                "INSECURE: {node} accepts UNAUTHENTICATED peers (--insecure-peers): anyone "
                "who can reach its peer port can join, write and disrupt the cluster; "
                "see docs/security.md", node=self.name)
        d = self._start()
        early, started = [], []
        d.addErrback(lambda failure: self._failed(failure) if started else
                     early.append(failure))
        started.append(True)
        if early:  # before the reactor runs (peer port in use, bad data dir):
            early[0].raiseException()  # twistd's caller reports it and exits
        return d

    @defer.inlineCallbacks
    def _start(self):
        cluster_name = self.cluster_name
        if self.attach:
            found, peers = yield self._discover(self.attach)
            if found != cluster_name:  # nodes of another cluster are refused
                raise ValueError(f"--attach {self.attach}: that node is in cluster "
                                 f"{found!r}, not {cluster_name!r}")
            self._queued_peers.update(peers)
        self._build_transport(cluster_name)
        port = yield self.transport.listen(self.peer_listen)
        if not self._advertised:
            host = port.getHost()
            address = dial_endpoint(f"{host.host}:{host.port}")
            self.member.set_peer_addr(address)
        self.log.info("cluster node {node} peer address {address}", node=self.name,
                      address=self.member.peer_addr)
        self.member.start(dialed_peers=self._queued_peers)

    @defer.inlineCallbacks
    def _discover(self, address):
        """(cluster name, {name: peer endpoint}) read from a member's store."""
        from doozertw.client import DoozerClient
        client = DoozerClient(address, secret=self.secret, reactor=self.reactor)
        try:
            name, _ = yield client.get("/ctl/name")
            peers = {}
            offset = 0
            while True:
                try:
                    event = yield client.walk("/ctl/node/*/peer", None, offset)
                except DoozerError as e:
                    if e.code == ErrCode.RANGE:
                        break
                    raise
                peers[event.path.split("/")[3]] = event.value.decode("utf-8")
                offset += 1
        finally:
            client.close()
        peers.pop(self.name, None)
        self.log.info("attaching to cluster {cluster} via {address}: peers {peers}",
                      cluster=name.decode(), address=address, peers=sorted(peers))
        return name.decode("utf-8") or self.cluster_name, peers

    def _fatal(self, failure):
        """The storage failed (EIO, a failed fsync): stop at once with a
        non-zero status, never retrying the fsync (its outcome is unknown)."""
        self.log.critical("{node}: stopping on a storage failure: {error}", node=self.name,
                          error=failure.getErrorMessage())
        os._exit(70)

    def _failed(self, failure):
        """Starting failed with the reactor running (an --attach node's peer
        port in use, say): the one-line reason goes to ``on_start_failure``
        (twistd's: print it, exit 1); without one, the reactor stops. A
        failure before the reactor runs raises from startService instead."""
        reason = " ".join(failure.getErrorMessage().split()) or failure.type.__name__
        self.log.critical("cluster node {node} failed to start: {reason}", node=self.name,
                          reason=reason)
        if self._on_start_failure is not None:
            self._on_start_failure(reason)
        elif getattr(self.reactor, "running", False):
            self.reactor.stop()

    def stopService(self):
        """Hand leadership to the most caught-up voter (so clients wait
        one round trip instead of an election timeout), then stop."""
        super().stopService()
        handed = self.member.hand_over()
        if not handed:
            return self._shutdown()
        d = deferLater(self.reactor, HAND_OVER_GRACE, lambda: None)
        return d.addCallback(lambda _: self._shutdown())

    def _shutdown(self):
        self.member.stop()
        if self.transport is not None:
            return self.transport.stop()
        return None


__all__ = ["ClusterService", "dial_endpoint"]
