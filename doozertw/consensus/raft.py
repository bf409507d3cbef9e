"""RaftNode: the pure Raft state machine of one server.

Driven by ``tick()`` (one unit of logical time), ``step(message)``,
``propose(data)``, ``propose_conf_change(change)``, ``read_index(ctx)`` and
``compact(index, data)``; everything it wants done comes out of ``ready()``
(see doozertw.consensus.ready for the driver's contract) and is acknowledged
with ``advance(ready)``. No I/O, no clock; randomness only from ``rng``.

Roles: FOLLOWER -> (election timeout) PRE_CANDIDATE -> (pre-vote quorum)
CANDIDATE -> (vote quorum) LEADER; any role -> FOLLOWER on a higher term.
"""

from __future__ import annotations

from doozertw.consensus import messages as msg
from doozertw.consensus.leader import LeaderMixin
from doozertw.consensus.log import MemoryStorage, RaftLog
from doozertw.consensus.membership import bootstrap_entries, validate_change
from doozertw.consensus.messages import (
    ConfChange, ConfState, Entry, EntryKind, HardState,
)
from doozertw.consensus.progress import Progress, quorum_size
from doozertw.consensus.readonly import ReadOnly
from doozertw.consensus.ready import (
    ConfChangeInProgress, InvalidConfChange, NotLeader, PeerStatus,
    ReadState, Ready, Role, SoftState, Status,
)
from doozertw.consensus.validate import problem

_LEADER_MESSAGES = (msg.AppendEntries, msg.Heartbeat, msg.InstallSnapshot)


class RaftNode(LeaderMixin):
    """One Raft server. ``storage`` (a doozertw.consensus.storage.Storage)
    holds what was made durable; ``config`` is the founding configuration
    (a ConfState or an iterable of voter ids) used only when ``storage`` is
    empty; a node joining an existing cluster, or resuming, passes an empty
    config."""

    def __init__(self, node_id, config, storage=None, rng=None, *,
                 election_ticks=10, heartbeat_ticks=1, pre_vote=True,
                 check_quorum=True, max_entries_per_msg=64,
                 max_bytes_per_msg=1 << 20, max_inflight_msgs=256,
                 max_apply_per_ready=None):
        if rng is None:
            raise ValueError("rng must be injected (a random.Random)")
        if heartbeat_ticks >= election_ticks:
            raise ValueError("heartbeat_ticks must be < election_ticks")
        if not isinstance(config, ConfState):
            config = ConfState(voters=config)
        self.id = node_id
        self.rng = rng
        self.election_ticks = election_ticks
        self.heartbeat_ticks = heartbeat_ticks
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.max_entries_per_msg = max_entries_per_msg
        self.max_bytes_per_msg = max_bytes_per_msg
        self.max_inflight_msgs = max_inflight_msgs
        self.max_apply_per_ready = max_apply_per_ready
        storage = storage if storage is not None else MemoryStorage()
        self.log = RaftLog.from_storage(storage)
        hs = storage.hard_state
        self.term = hs.term
        self.vote = hs.vote or None
        if self._is_fresh(storage) and config.members():
            self.log.append(bootstrap_entries(config))
            self.log.commit_to(self.log.last_index())
            self.term = max(self.term, 1)
        self.conf = self.log.conf_at()
        self.role = Role.FOLLOWER
        self.leader = None
        self.msgs = []
        self.read_states = []
        self.progress = {}
        self.votes = {}
        self.read_only = ReadOnly()
        self.pending_reads = []
        self.dropped = 0
        self.last_dropped = None
        self._prev_hard = hs
        self._prev_soft = SoftState(None, Role.FOLLOWER)
        self.become_follower(self.term, None)

    @staticmethod
    def _is_fresh(storage):
        return storage.last_index() == 0 and storage.hard_state == HardState()

    # -- inspection --------------------------------------------------------

    @property
    def is_leader(self):
        return self.role == Role.LEADER

    @property
    def hard_state(self):
        return HardState(self.term, self.vote or "", self.log.committed)

    @property
    def soft_state(self):
        return SoftState(self.leader, self.role)

    def promotable(self):
        return self.id in self.conf.voters

    def committed_in_term(self):
        return self.log.term(self.log.committed) == self.term

    # -- role transitions --------------------------------------------------

    def _reset(self, term):
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self.rng.randrange(
            self.election_ticks, 2 * self.election_ticks)
        self.votes = {}
        self.progress = {}
        self.read_only = ReadOnly()
        self.pending_reads = []

    def become_follower(self, term, leader):
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_pre_candidate(self):
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self.votes = {}
        self.randomized_timeout = self.rng.randrange(
            self.election_ticks, 2 * self.election_ticks)

    def _become_candidate(self):
        self._reset(self.term + 1)
        self.role = Role.CANDIDATE
        self.vote = self.id

    def _become_leader(self):
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        last = self.log.last_index()
        for nid in self.conf.members():
            self.progress[nid] = self._new_progress(nid, last + 1)
        if self.id in self.progress:
            self.progress[self.id].match = self.log.stable
            self.progress[self.id].become_replicate()
        # §5.4.2 / §8: a no-op of the new term lets earlier entries commit.
        self._append(Entry(self.term, last + 1))
        self._bcast_append()

    def _new_progress(self, nid, next_index):
        return Progress(next_index, self.max_inflight_msgs,
                        is_learner=nid in self.conf.learners)

    # -- ticking -----------------------------------------------------------

    def tick(self):
        """Advance logical time by one tick."""
        if self.role == Role.LEADER:
            self._tick_leader()
            return
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_timeout:
            self.election_elapsed = 0
            self.campaign()

    # -- elections ---------------------------------------------------------

    def campaign(self, transfer=False):
        """Start an election (a pre-vote round first, if enabled)."""
        if not self.promotable():
            return
        use_pre_vote = self.pre_vote and not transfer
        if use_pre_vote:
            self._become_pre_candidate()
            term = self.term + 1
        else:
            self._become_candidate()
            term = self.term
        if self._record_vote(self.id, True):
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for v in sorted(self.conf.voters - {self.id}):
            if use_pre_vote:
                self._send(msg.PreVote(self.id, v, term, last_index, last_term))
            else:
                self._send(msg.RequestVote(self.id, v, term, last_index,
                                           last_term, transfer))

    def _record_vote(self, voter, granted):
        """Count a vote; returns True if the election was decided."""
        self.votes.setdefault(voter, granted)
        voters = self.conf.voters
        yes = sum(1 for v, g in self.votes.items() if g and v in voters)
        no = sum(1 for v, g in self.votes.items() if not g and v in voters)
        if yes >= quorum_size(voters):
            if self.role == Role.PRE_CANDIDATE:
                self.campaign_after_pre_vote()
            else:
                self._become_leader()
            return True
        if no > len(voters) - quorum_size(voters):
            self.become_follower(self.term, None)
            return True
        return False

    def campaign_after_pre_vote(self):
        self.role = Role.FOLLOWER
        self._become_candidate()
        if self._record_vote(self.id, True):
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for v in sorted(self.conf.voters - {self.id}):
            self._send(msg.RequestVote(self.id, v, self.term, last_index,
                                       last_term))

    def _handle_vote_request(self, m):
        pre = isinstance(m, msg.PreVote)
        can_vote = (self.vote == m.src
                    or (self.vote is None and self.leader is None)
                    or (pre and m.term > self.term))
        if can_vote and self.log.is_up_to_date(m.last_index, m.last_term):
            if not pre:
                self.election_elapsed = 0
                self.vote = m.src
            term, granted = m.term, True
        else:
            term, granted = self.term, False
        resp = msg.PreVoteResponse if pre else msg.RequestVoteResponse
        self._send(resp(self.id, m.src, term, granted))

    # -- stepping ----------------------------------------------------------

    def step(self, m):
        """Handle one message from a peer.

        Never raises for a message the codec decodes: a message no correct
        peer could send (``validate.problem``), or one that would break a
        log invariant (rewrite committed entries, an impossible membership
        change), is dropped, counted in ``dropped`` and described in
        ``last_dropped`` for the driver to log.
        """
        reason = problem(m)
        if reason is not None:
            self._drop(m, reason)
            return
        if m.dst != self.id:
            return
        if m.term > self.term:
            if not self._accept_higher_term(m):
                return
        elif m.term < self.term:
            self._handle_stale(m)
            return
        if isinstance(m, (msg.PreVote, msg.RequestVote)):
            self._handle_vote_request(m)
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _drop(self, m, reason):
        self.dropped += 1
        self.last_dropped = (type(m).__name__, getattr(m, "src", None), reason)

    def _accept_higher_term(self, m):
        """Adopt m.term where appropriate; False means drop the message."""
        if isinstance(m, (msg.PreVote, msg.RequestVote)):
            forced = isinstance(m, msg.RequestVote) and m.transfer
            in_lease = (self.check_quorum and self.leader is not None
                        and self.election_elapsed < self.election_ticks)
            if in_lease and not forced:
                return False
        if isinstance(m, msg.PreVote):
            return True
        if isinstance(m, msg.PreVoteResponse) and m.granted:
            return True
        leader = m.src if isinstance(m, _LEADER_MESSAGES) else None
        self.become_follower(m.term, leader)
        return True

    def _handle_stale(self, m):
        if (self.check_quorum or self.pre_vote) and isinstance(
                m, (msg.AppendEntries, msg.Heartbeat)):
            # Tell a deposed leader about the newer term.
            self._send(msg.AppendEntriesResponse(self.id, m.src, self.term, 0))
        elif isinstance(m, msg.PreVote):
            self._send(msg.PreVoteResponse(self.id, m.src, self.term, False))
        elif isinstance(m, msg.RequestVote):
            self._send(msg.RequestVoteResponse(self.id, m.src, self.term, False))

    def _step_candidate(self, m):
        if isinstance(m, _LEADER_MESSAGES):
            self.become_follower(self.term, m.src)
            self._step_follower(m)
        elif isinstance(m, msg.PreVoteResponse):
            if self.role == Role.PRE_CANDIDATE:
                self._record_vote(m.src, m.granted)
        elif isinstance(m, msg.RequestVoteResponse):
            if self.role == Role.CANDIDATE:
                self._record_vote(m.src, m.granted)
        elif isinstance(m, msg.ReadIndexResponse):
            self.read_states.append(ReadState(m.ctx, m.index))

    def _step_follower(self, m):
        if isinstance(m, _LEADER_MESSAGES):
            self.election_elapsed = 0
            self.leader = m.src
            if isinstance(m, msg.AppendEntries):
                self._handle_append(m)
            elif isinstance(m, msg.Heartbeat):
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif isinstance(m, msg.TimeoutNow):
            if m.src == self.leader:
                self.campaign(transfer=True)
            else:
                self._drop(m, "TimeoutNow not from the leader")
        elif isinstance(m, msg.ReadIndexResponse):
            self.read_states.append(ReadState(m.ctx, m.index))

    def _handle_append(self, m):
        if m.prev_index < self.log.committed:
            self._send(msg.AppendEntriesResponse(
                self.id, m.src, self.term, self.log.committed))
            return
        reason = self._unsafe_append(m)
        if reason is not None:
            self._drop(m, reason)
            return
        last = self.log.maybe_append(m.prev_index, m.prev_term, m.entries)
        if last is None:
            hint = min(m.prev_index, self.log.last_index())
            hint, hint_term = self.log.find_conflict_by_term(hint, m.prev_term)
            self._send(msg.AppendEntriesResponse(
                self.id, m.src, self.term, m.prev_index, True, hint,
                hint_term or 0))
            return
        self._refresh_conf(m.entries)
        self.log.commit_to(min(m.commit, last))
        self._send(msg.AppendEntriesResponse(self.id, m.src, self.term, last))

    def _unsafe_append(self, m):
        """Why appending ``m.entries`` (prev_index >= commit) would break the
        log, or None: a committed entry replaced, or a configuration change
        that cannot apply (``ConfState.apply`` would raise later)."""
        log = self.log
        if not log.matches(m.prev_index, m.prev_term):
            return None  # rejected without touching the log
        effective = []
        for i, e in enumerate(m.entries):
            if log.term(e.index) != e.term:
                if e.index <= log.committed:
                    return "rewrites a committed entry"
                effective.extend(m.entries[i:])
                break
            effective.append(log.slice(e.index, e.index + 1)[0])
        if not any(e.kind == EntryKind.CONF_CHANGE for e in m.entries):
            return None  # dropping a suffix keeps a valid conf sequence
        conf = log.conf_at(m.prev_index)
        try:
            for e in effective:
                if e.kind == EntryKind.CONF_CHANGE:
                    conf = conf.apply(e.conf_change())
        except ValueError:
            return "impossible configuration change"
        return None

    def _handle_heartbeat(self, m):
        last = self.log.last_index()
        if m.commit > last:
            # The leader saw us match beyond our log in this term: our
            # state was lost (a "lose everything" restart).
            self._send(msg.AppendEntriesResponse(
                self.id, m.src, self.term, m.commit, True, last,
                self.log.last_term(), reset=True))
        self.log.commit_to(min(m.commit, last))
        self._send(msg.HeartbeatResponse(self.id, m.src, self.term, m.ctx))

    def _handle_snapshot(self, m):
        snap = m.snapshot
        if snap.index > self.log.committed:
            if self.log.matches(snap.index, snap.term):
                self.log.commit_to(snap.index)
            else:
                self.log.restore(snap)
                self.conf = snap.meta.conf
        self._send(msg.InstallSnapshotResponse(
            self.id, m.src, self.term, self.log.committed))

    def _refresh_conf(self, new_entries=()):
        """Recompute the configuration if the log's conf entries changed."""
        if self.log.conf_dirty or any(
                e.kind == EntryKind.CONF_CHANGE for e in new_entries):
            self.log.conf_dirty = False
            self.conf = self.log.conf_at()
            if self.role == Role.LEADER:
                self._sync_progress()

    # -- client operations -------------------------------------------------

    def propose(self, data: bytes):
        """Append ``data`` as a new entry; returns (index, term). Raises
        NotLeader if this node cannot accept proposals."""
        return self.propose_batch([data])[0]

    def propose_batch(self, datas):
        """Append several entries at once (one replication round for all);
        returns their (index, term) in order. Raises NotLeader."""
        self._check_can_propose()
        first = self.log.last_index() + 1
        entries = [Entry(self.term, first + i, EntryKind.NORMAL, bytes(d))
                   for i, d in enumerate(datas)]
        if entries:
            self._append(*entries)
            self._bcast_append()
        return [(e.index, e.term) for e in entries]

    def propose_conf_change(self, change: ConfChange):
        """Propose one membership change; returns (index, term). Raises
        NotLeader, ConfChangeInProgress or InvalidConfChange."""
        self._check_can_propose()
        if self.log.has_conf_change_after(self.log.committed):
            raise ConfChangeInProgress("a configuration change is pending")
        if not self.committed_in_term():
            raise ConfChangeInProgress("leader has not committed in its term")
        validate_change(self.conf, change)
        index = self.log.last_index() + 1
        self._append(Entry(self.term, index, EntryKind.CONF_CHANGE,
                           change.encode()))
        self._bcast_append()
        return index, self.term

    def _check_can_propose(self):
        if self.role != Role.LEADER:
            raise NotLeader(self.leader)
        if self.id not in self.conf.voters:
            raise NotLeader(None)

    def read_index(self, ctx: bytes):
        """Request a linearizable read point for ``ctx`` (unique per request
        cluster-wide). The answer comes later as a ReadState in a Ready;
        requests are dropped if leadership changes, so the caller retries
        after a timeout. Raises NotLeader(None) if no leader is known."""
        if self.role == Role.LEADER:
            self._leader_read(ctx, self.id)
        elif self.leader is None:
            raise NotLeader(None)
        else:
            self._send(msg.ReadIndexRequest(self.id, self.leader, self.term, ctx))

    def transfer_leadership(self, to):
        """Ask voter ``to`` (fully caught up) to take over at once."""
        if self.role != Role.LEADER:
            raise NotLeader(self.leader)
        if to not in self.conf.voters or to == self.id:
            raise InvalidConfChange(f"{to} is not another voter")
        if self._match_of(to) != self.log.last_index():
            self._send_append(to)
            return False
        self._send(msg.TimeoutNow(self.id, to, self.term))
        return True

    def compact(self, index, data: bytes):
        """Replace entries up to ``index`` (<= applied) by a snapshot whose
        application state is ``data``; returns the Snapshot for the driver
        to keep (``storage.compact(snapshot)``)."""
        return self.log.compact(index, bytes(data), self.log.conf_at(index))

    def status(self):
        """A read-only summary for monitoring (the web view, /ctl)."""
        progress = {nid: PeerStatus(pr.match, pr.next, pr.state.value,
                                    pr.recent_active)
                    for nid, pr in sorted(self.progress.items())}
        return Status(self.id, self.term, self.vote, self.role, self.leader,
                      self.log.committed, self.log.applied,
                      self.log.last_index(), self.log.snapshot.index,
                      self.conf, progress)

    # -- Ready -------------------------------------------------------------

    def _send(self, m):
        self.msgs.append(m)

    def has_ready(self):
        return bool(self.msgs or self.read_states
                    or self.log.unstable_snapshot is not None
                    or self.log.stable < self.log.last_index()
                    or self.log.committed > self.log.applied
                    or self.hard_state != self._prev_hard
                    or self.soft_state != self._prev_soft)

    def ready(self):
        """Everything the driver must do now. Messages and read states are
        handed over (not repeated); call advance(ready) when done."""
        hard, soft = self.hard_state, self.soft_state
        rd = Ready(
            messages=tuple(self.msgs),
            entries=tuple(self.log.unstable_entries()),
            hard_state=hard if hard != self._prev_hard else None,
            committed_entries=tuple(self.log.next_committed(
                self.max_apply_per_ready)),
            snapshot=self.log.unstable_snapshot,
            read_states=tuple(self.read_states),
            soft_state=soft if soft != self._prev_soft else None,
        )
        self.msgs = []
        self.read_states = []
        return rd

    def advance(self, rd):
        """The driver has persisted, sent and applied ``rd``."""
        if rd.snapshot is not None:
            if self.log.unstable_snapshot is rd.snapshot:
                self.log.unstable_snapshot = None
            if rd.snapshot.index > self.log.applied:
                self.log.applied = rd.snapshot.index
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
            if self.role == Role.LEADER:
                self._self_persisted()
        if rd.committed_entries:
            last = rd.committed_entries[-1].index
            if last > self.log.applied:
                self.log.applied_to(last)
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state


__all__ = ["RaftNode", "bootstrap_entries"]
