"""ClusterMember: one node's cluster machinery, assembled.

Wires a ClusterDriver (Raft on the reactor), a ReplicatedProposer (writes),
a ReadBarrier (linearizable reads), Membership (/ctl and the Raft
configuration) and a Bootstrapper (found or join) around one Store, and
the Node that front ends call (its ``cluster_status`` is a ClusterStatus,
doozertw.cluster.status). A node that becomes leader writes its name to
/ctl/leader, once per leadership. It knows the network only through two
functions, so tests wire it to an in-memory network and twistd to a
PeerTransport:

- ``send(name, payload) -> bool`` (PeerTransport.send),
- ``add_peer(name, endpoint)`` (PeerTransport.add_peer);

and the network hands received payloads to ``receive(name, payload)``.
"""

from __future__ import annotations

import math
import secrets as _secrets
import socket

from twisted.internet import task
from twisted.logger import Logger

from doozertw.cluster.bootstrap import Bootstrapper
from doozertw.cluster.driver import ClusterDriver, Timing
from doozertw.cluster.lease_forward import LeaseForwarder
from doozertw.cluster.lessor import Lessor
from doozertw.cluster.membership import Membership, peer_path
from doozertw.cluster.proposer import ReplicatedProposer
from doozertw.cluster.reads import ReadBarrier
from doozertw.cluster.status import ClusterStatus
from doozertw.consensus import RaftError, RaftNode, Role
from doozertw.node import Node
from doozertw.store import CLOBBER


LEADER_PATH = "/ctl/leader"


def new_incarnation(rng=None):
    """A short random token naming one life of a node."""
    if rng is not None:
        return f"{rng.getrandbits(32):08x}"
    return _secrets.token_hex(4)


class ClusterMember:
    """See the module docstring. ``voters`` are the configured voter names
    (this node's included; empty to join with ``--attach``); ``peer_stats``
    (a zero-argument callable returning {name: PeerStats}) feeds the
    cluster view's link health and round trips."""

    log = Logger()

    def __init__(self, name, voters, *, store, reactor, rng, send, add_peer,
                 peer_addr, client_addr="", cluster_name="local", limits=None,
                 timing=Timing(), timeout=None, incarnation=None,
                 applied_every=None, hostname=None, probe_interval=0.2,
                 membership_interval=0.25, storage_provider=None, on_fatal=None,
                 link_view=None, peer_stats=None):
        self.name = name
        self.reactor = reactor
        self.peer_addr = peer_addr
        self.client_addr = client_addr
        self.hostname = hostname or socket.gethostname()
        self.applied_every = applied_every
        self.driver = ClusterDriver(name, store, send, reactor, rng, timing,
                                    storage_provider=storage_provider, on_fatal=on_fatal,
                                    link_view=link_view)
        self.proposer = ReplicatedProposer(self.driver, reactor)
        self.reads = ReadBarrier(self.driver, reactor)
        self.membership = Membership(self.driver, self.proposer.propose, add_peer,
                                     reactor, interval=membership_interval,
                                     timeout=timeout)
        self.cluster_status = ClusterStatus(self, peer_stats=peer_stats)
        self.lessor = self._make_lessor(store, timing)
        self.node = Node(name=name, store=store, proposer=self.proposer,
                         cluster_name=cluster_name, limits=limits,
                         read_barrier=self.reads, reactor=reactor,
                         cluster_status=self.cluster_status,
                         raft_position=self._raft_position, lessor=self.lessor)
        self.driver.on_role.append(self._role_changed)
        self.voters = frozenset(voters)
        self.bootstrap = Bootstrapper(
            self.driver, voters, incarnation or new_incarnation(rng), peer_addr,
            client_addr, reactor, interval=probe_interval, peers=self._join_targets,
            on_member=self._became_member)
        self._applied_loop = None

    @property
    def store(self):
        return self.driver.store

    def _make_lessor(self, store, timing):
        """Leases are timed by the leader: a new leader gives each one the
        longest election timeout on top of its TTL; the shortest TTL is one
        and a half of that timeout (as etcd's)."""
        election = 2 * timing.tick * timing.election_ticks
        lessor = Lessor(store, self.proposer.propose, self.reactor, extension=election,
                        min_ttl=max(1, math.ceil(1.5 * election)))
        self.lease_forwarder = LeaseForwarder(self.driver, self.reactor, lessor.answer,
                                              timeout=timing.quorum_timeout)
        lessor.ask_leader = self.lease_forwarder.ask
        return lessor

    def _raft_position(self):
        """(index, term) of the last entry applied to the store."""
        raft = self.driver.raft
        if raft is None:
            return 0, 0
        return self.driver.applied, raft.term_at(self.driver.applied) or 0

    def receive(self, from_name, payload):
        """A peer's payload; False if it did not decode."""
        return self.driver.receive(from_name, payload)

    def start(self, dialed_peers=None):
        """Resume from stored Raft state if there is any, else found or
        join (raises DataDirError for a data directory not of this node).
        ``dialed_peers`` ({name: endpoint}) are peers the transport already
        dials: membership will not dial them again."""
        for name, endpoint in sorted((dialed_peers or {}).items()):
            if name != self.name:
                self.membership.remember(name, endpoint)
        self.bootstrap.start(resume_as=self.driver.storage_provider.existing())
        self.membership.start()

    def set_client_addr(self, address):
        """The client address to publish, once the client port listens: sent
        in join requests and, for a member, written to /ctl now."""
        self.client_addr = self.bootstrap.client_addr = address
        if self.driver.started and self.driver.is_member():
            self.describe()

    def set_peer_addr(self, address):
        """The peer address to publish, once the peer port listens."""
        self.peer_addr = self.bootstrap.peer_addr = address

    def stop(self):
        self.bootstrap.stop()
        self.membership.stop()
        self.driver.stop()
        if self._applied_loop is not None and self._applied_loop.running:
            self._applied_loop.stop()
        self.proposer.fail_all("node stopping")
        self.lessor.demote()
        self.lease_forwarder.fail_all("node stopping")

    def status(self):
        """A JSON-friendly summary for the web view, metrics and drills."""
        driver = self.driver
        raft = driver.raft
        summary = {
            "name": self.name, "member": driver.member_id,
            "phase": self.bootstrap.phase.value, "applied": driver.applied,
            "pending_writes": self.proposer.pending_count,
        }
        if raft is not None:
            st = raft.status()
            summary.update({
                "role": st.role.value, "term": st.term, "leader": st.leader,
                "commit": st.commit, "voters": sorted(st.conf.voters),
                "learners": sorted(st.conf.learners),
            })
        return summary

    def hand_over(self):
        """If leader, ask the most caught-up other voter to take over at
        once (Raft leadership transfer); True if asked."""
        driver = self.driver
        if not driver.is_leader:
            return False
        st = driver.raft.status()
        others = sorted(st.conf.voters - {driver.member_id})
        if not others:
            return False
        best = max(others, key=lambda m: st.progress[m].match if m in st.progress else 0)
        try:
            return bool(driver.call(RaftNode.transfer_leadership, best))
        except RaftError:
            return False

    def _join_targets(self):
        return sorted((self.voters | set(self.membership.known_peers)) - {self.name})

    def add_known_peer(self, name, endpoint):
        """A peer learned outside the store (``--attach`` discovery)."""
        self.membership.dial(name, endpoint)

    # -- /ctl/node/<name> -------------------------------------------------------------

    def _became_member(self):
        self.reactor.callLater(0, self.describe)
        if self.applied_every:
            self._applied_loop = task.LoopingCall(self._write_applied)
            self._applied_loop.clock = self.reactor
            self._applied_loop.start(self.applied_every, now=False)

    def describe(self):
        """Write this node's /ctl/node entries (addr, hostname, version, peer)."""
        def failed(failure):
            self.log.warn("could not describe {node} in /ctl: {error}", node=self.name,
                          error=failure.getErrorMessage())
        self.node.describe_self(self.client_addr, self.hostname).addErrback(failed)
        self.node.set(peer_path(self.name), CLOBBER,
                      self.peer_addr.encode("utf-8")).addErrback(failed)

    # -- /ctl/leader ---------------------------------------------------------------------

    def _role_changed(self, soft):
        if soft.role == Role.LEADER and soft.leader == self.driver.member_id:
            self.announce_leadership()
            self._promote_lessor(self.driver.raft.status().term)
        else:
            self.lessor.demote()

    def _promote_lessor(self, term):
        """Time leases once this leader has applied all that was committed
        before its term (its first read barrier), if it still leads then."""
        def caught_up(_):
            raft = self.driver.raft
            if self.driver.is_leader and raft is not None and raft.status().term == term:
                self.lessor.promote()

        def failed(failure):
            self.log.info("lease clock not started in term {term}: {error}", term=term,
                          error=failure.getErrorMessage())
            raft = self.driver.raft
            if self.driver.is_leader and raft is not None and raft.status().term == term:
                self._promote_lessor(term)
        self.reads.barrier().addCallbacks(caught_up, failed)

    def announce_leadership(self):
        """Write this node's name to /ctl/leader (a normal replicated write)."""
        def failed(failure):
            self.log.warn("could not write /ctl/leader for {node}: {error}",
                          node=self.name, error=failure.getErrorMessage())
        return self.node.set(LEADER_PATH, CLOBBER,
                             self.name.encode("utf-8")).addErrback(failed)

    def _write_applied(self):
        self.node.set(f"/ctl/node/{self.name}/applied", CLOBBER,
                      str(self.store.rev).encode("ascii")).addErrback(lambda _: None)


__all__ = ["LEADER_PATH", "ClusterMember", "new_incarnation"]
