"""The web port's view of a replicated cluster, as one member sees it.

``ClusterStatus(member)`` is a zero-argument callable returning a
doozertw.frontends.web.status.ClusterView; ClusterMember attaches one as
``node.cluster_status``, so /v1/cluster, /health, /readyz, /metrics and the
web page's cluster panel show the cluster. What it reports, and how much
this node can know:

- members: the Raft configuration's voters and learners, by node name
  (a member id ``n1~a3f9`` is node ``n1``); role ``leader`` for the leader
  this node follows, ``learner`` for learners, ``follower`` for other
  voters, and this node's own role (``candidate`` while it campaigns); a
  node not in the configuration lists itself with its bootstrap phase
  (``probing``, ``joining``) or ``removed`` as its role;
- term: this node's current term (the term it knows for everyone);
- applied: for this node, its store revision; for another member, on the
  leader only, the store revision its log is replicated up to (the Raft
  match index translated through ``RevisionIndex``); otherwise None
  (unknown — JSON ``null``);
- healthy: this node itself; another member when this node heard a Raft
  message from it within one maximum election timeout, or its peer link is
  up (``peer_stats``);
- has_quorum: the leader heard from a majority of voters (itself
  included) within that window; a follower or learner heard from the leader
  it follows within it; a candidate or a node not yet a member: False;
- leader_changes: (term, leader) pairs this node has seen a leader for;
- peer_rtt: the last ping round trip of each peer link (``peer_stats``);
- raft: RaftFigures for /metrics (None before Raft starts): indexes, this
  node's role, ReadIndex rounds, pending proposals, snapshots received,
  the snapshot and fsync duration histograms and every peer link's stats.
"""

from __future__ import annotations

import collections

from doozertw.cluster.bootstrap import Phase
from doozertw.cluster.envelope import name_of
from doozertw.consensus import Role
from doozertw.errors import DoozerError
from doozertw.status import (
    CANDIDATE, FOLLOWER, LEADER, LEARNER, ClusterView, MemberStatus, RaftFigures,
    StorageView)

LINK_UP = "up"
REMOVED = "removed"


class RevisionIndex:
    """Store revision after each of the last ``keep`` applied log entries.

    ``record(index, outcome)`` is fed every applied entry in order (it is a
    ClusterDriver ``on_apply`` listener body). ``rev_at(index)`` is the
    revision the store had once entries up to ``index`` were applied, or
    None when unknown: older than the window, not applied here yet, or
    before the first write after a snapshot was installed.
    """

    def __init__(self, keep=4096):
        self._revs = collections.deque(maxlen=keep)
        self._last_index = 0
        self._rev = 0

    def record(self, index, outcome):
        if index != self._last_index + 1:
            self._revs.clear()  # entries skipped (a snapshot): earlier revs unknown
            self._rev = None
        self._last_index = index
        if outcome is not None and (outcome.event is not None or outcome.events):
            self._rev = outcome.rev
        self._revs.append(self._rev)

    def rev_at(self, index):
        first = self._last_index - len(self._revs) + 1
        if index == 0 and self._revs and first == 1:
            return 0
        if index < first or index > self._last_index:
            return None
        return self._revs[index - first]


class ClusterStatus:
    """A ClusterMember's status source; see the module docstring.

    ``peer_stats``: a zero-argument callable returning {name: PeerStats}
    (PeerTransport.stats), or None where there is no transport (in memory).
    """

    def __init__(self, member, peer_stats=None):
        self.member = member
        self.peer_stats = peer_stats
        self.leader_changes = 0
        self.revisions = RevisionIndex()
        self._last_leader = None
        member.driver.on_role.append(self._role_changed)
        member.driver.on_apply.append(
            lambda index, term, proposal, outcome: self.revisions.record(index, outcome))

    # -- listeners -------------------------------------------------------------

    def _role_changed(self, soft):
        raft = self.member.driver.raft
        if soft.leader is None or raft is None:
            return
        seen = (raft.term, soft.leader)
        if seen != self._last_leader:
            self._last_leader = seen
            self.leader_changes += 1

    # -- the view ----------------------------------------------------------------

    def __call__(self):
        member, driver = self.member, self.member.driver
        st = driver.raft.status() if driver.raft is not None else None
        stats = self._stats()
        leader = name_of(st.leader) if st is not None and st.leader else ""
        term = st.term if st is not None else 0
        members = () if st is None else tuple(
            self._member(mid, st, stats) for mid in self._member_ids(st))
        if not any(m.name == member.name for m in members):
            members = (self._outsider(term),) + members
        rtt = tuple((name, link.rtt) for name, link in sorted(stats.items())
                    if link.rtt is not None)
        return ClusterView(name=member.node.cluster_name, self_name=member.name,
                           leader=leader, term=term, has_quorum=self.has_quorum(),
                           members=members, leader_changes=self.leader_changes,
                           peer_rtt=rtt, storage=self._storage(st),
                           raft=self._raft(st, members, stats))

    def _raft(self, st, members, stats):
        """RaftFigures from Status ``st`` (None: Raft not started)."""
        if st is None:
            return None
        member, driver = self.member, self.member.driver
        me = next((m for m in members if m.name == member.name), None)
        provider_fsyncs = getattr(driver.storage_provider, "fsync_seconds", None)
        return RaftFigures(
            role=me.role if me is not None else "", commit=st.commit,
            applied=driver.applied, last_index=st.last_index,
            read_rounds=member.reads.rounds,
            proposals_pending=member.proposer.pending_count,
            snapshots_received=driver.snapshots_in.completed,
            snapshot_seconds=driver.snapshot_seconds.snapshot(),
            fsync_seconds=None if provider_fsyncs is None else provider_fsyncs.snapshot(),
            peers=tuple(stats[name] for name in sorted(stats)))

    def _storage(self, st):
        """``st``: the Raft node's Status, or None before it starts."""
        driver = self.member.driver
        storage = driver.storage
        stats = getattr(storage, "stats", None)
        return StorageView(
            durable=driver.storage_provider.durable,
            fsyncs=stats.fsyncs if stats is not None else 0,
            bytes_written=stats.bytes_written if stats is not None else 0,
            snapshot_index=st.snapshot_index if st is not None else 0,
            last_index=st.last_index if st is not None else 0,
            writes_refused=driver.write_refusal() or "")

    def has_quorum(self):
        """True when this node can commit writes now (see the module docstring)."""
        driver = self.member.driver
        raft = driver.raft
        if raft is None or not driver.is_member():
            return False
        if raft.role == Role.LEADER:
            alive = [m for m in raft.conf.voters if m == raft.id or self._heard(m)]
            return len(alive) > len(raft.conf.voters) // 2
        if raft.leader is None or raft.role != Role.FOLLOWER:
            return False
        return self._heard(raft.leader)

    def _member_ids(self, st):
        """Voters then learners of Status ``st``, each sorted; the leader
        first."""
        voters, learners = sorted(st.conf.voters), sorted(st.conf.learners)
        ordered = voters + learners
        if st.leader in ordered:
            ordered.remove(st.leader)
            ordered.insert(0, st.leader)
        return ordered

    def _member(self, mid, st, stats):
        name = name_of(mid)
        is_self = mid == st.id
        return MemberStatus(
            name=name, role=self._role(mid, st), term=st.term,
            applied=self.member.store.rev if is_self else self._applied_of(mid, st),
            healthy=is_self or self._heard(mid) or self._link_up(stats.get(name)),
            addr=self._addr(name))

    def _outsider(self, term):
        """This node while not in the configuration: its bootstrap phase
        (``probing``, ``joining``), or ``removed``."""
        phase = self.member.bootstrap.phase
        role = REMOVED if phase == Phase.MEMBER else phase.value
        return MemberStatus(name=self.member.name, role=role, term=term,
                            applied=self.member.store.rev, healthy=True,
                            addr=self._addr(self.member.name))

    @staticmethod
    def _role(mid, st):
        if mid == st.id:
            if st.role == Role.LEADER:
                return LEADER
            if st.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
                return CANDIDATE
            return LEARNER if mid in st.conf.learners else FOLLOWER
        if mid == st.leader:
            return LEADER
        return LEARNER if mid in st.conf.learners else FOLLOWER

    def _applied_of(self, mid, st):
        if st.role != Role.LEADER or mid not in st.progress:
            return None
        return self.revisions.rev_at(st.progress[mid].match)

    def _heard(self, mid):
        driver = self.member.driver
        heard = driver.last_heard.get(mid)
        if heard is None:
            return False
        timing = driver.timing
        window = 2 * timing.election_ticks * timing.tick
        return driver.reactor.seconds() - heard <= window

    @staticmethod
    def _link_up(stats):
        return stats is not None and stats.state == LINK_UP

    def _stats(self):
        if self.peer_stats is None:
            return {}
        return self.peer_stats()

    def _addr(self, name):
        try:
            value, rev = self.member.store.get(f"/ctl/node/{name}/addr", None)
        except DoozerError:
            return ""
        return value.decode("utf-8", "replace") if rev > 0 else ""


__all__ = ["ClusterStatus", "RevisionIndex"]
