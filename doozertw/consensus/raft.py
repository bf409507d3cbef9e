"""RaftNode: the pure Raft state machine of one server.

The public surface is small (as etcd's RawNode over its raft struct):

- inputs: ``tick()`` (one unit of logical time), ``step(message)``,
  ``campaign()``, ``propose(data)`` / ``propose_batch(datas)``,
  ``propose_conf_change(change)``, ``read_index(ctx)``,
  ``transfer_leadership(to)``, ``compact(index, data)`` and the transport's
  ``report_unreachable(peer)`` / ``report_snapshot(peer, ok)``;
- outputs: ``has_ready()`` / ``ready()``, acknowledged with
  ``advance(ready)`` (see doozertw.consensus.ready for the driver's
  contract);
- inspection: ``status()`` (a frozen copy of everything a monitor or a
  driver may look at), ``term_at(index)``, and the cheap read-only
  ``id``, ``term``, ``role``, ``leader``, ``is_leader``, ``conf``,
  ``snapshot_index`` and ``holds_read_lease`` (``lease_reads``: see
  doozertw.consensus.lease).

Everything else is private. No I/O, no clock; randomness only from ``rng``.

Roles: FOLLOWER -> (election timeout) PRE_CANDIDATE -> (pre-vote quorum)
CANDIDATE -> (vote quorum) LEADER; any role -> FOLLOWER on a higher term.
Each role has its own step and tick function, selected when the role
changes (``_step_role``, ``_tick_role``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from doozertw.consensus import messages as msg
from doozertw.consensus.leader import LeaderMixin
from doozertw.consensus.lease import MIN_LEASE_ELECTION_TICKS, is_lease_ctx
from doozertw.consensus.log import MemoryStorage, RaftLog
from doozertw.consensus.membership import bootstrap_entries, validate_change
from doozertw.consensus.messages import (
    ConfChange, ConfState, Entry, EntryKind, HardState, Message, Snapshot,
)
from doozertw.consensus.progress import quorum_size
from doozertw.consensus.ready import (
    ConfChangeInProgress, Dropped, InvalidConfChange, NotLeader, PeerStatus,
    ReadState, Ready, Role, SoftState, Status,
)
from doozertw.consensus.storage import Storage
from doozertw.consensus.validate import problem

_LEADER_MESSAGES = (msg.AppendEntries, msg.Heartbeat, msg.InstallSnapshot)


class RaftNode(LeaderMixin):
    """One Raft server. ``storage`` (a doozertw.consensus.storage.Storage)
    holds what was made durable; ``config`` is the founding configuration
    (a ConfState or an iterable of voter ids) used only when ``storage`` is
    empty; a node joining an existing cluster, or resuming, passes an empty
    config. ``rng`` is required (a random.Random): it draws election
    timeouts in [election_ticks, 2 * election_ticks)."""

    def __init__(self, node_id: str, config: ConfState | Iterable[str],
                 storage: Storage | None = None,
                 rng: random.Random | None = None, *,
                 election_ticks: int = 10, heartbeat_ticks: int = 1,
                 pre_vote: bool = True, check_quorum: bool = True,
                 max_entries_per_msg: int = 64, max_bytes_per_msg: int = 1 << 20,
                 max_inflight_msgs: int = 256,
                 max_apply_per_ready: int | None = None,
                 lease_reads: bool = False) -> None:
        if rng is None:
            raise ValueError("rng must be injected (a random.Random)")
        if heartbeat_ticks >= election_ticks:
            raise ValueError("heartbeat_ticks must be < election_ticks")
        if lease_reads and not check_quorum:
            raise ValueError("lease_reads needs check_quorum")
        if lease_reads and election_ticks < MIN_LEASE_ELECTION_TICKS:
            raise ValueError(f"lease_reads needs election_ticks >= {MIN_LEASE_ELECTION_TICKS}")
        if not isinstance(config, ConfState):
            config = ConfState(voters=config)
        self._id = node_id
        self._rng = rng
        self._election_ticks = election_ticks
        self._heartbeat_ticks = heartbeat_ticks
        self._pre_vote = pre_vote
        self._check_quorum = check_quorum
        self._lease_reads = lease_reads
        self._ticks_alive = 0
        self._max_entries_per_msg = max_entries_per_msg
        self._max_bytes_per_msg = max_bytes_per_msg
        self._max_inflight_msgs = max_inflight_msgs
        self._max_apply_per_ready = max_apply_per_ready
        storage = storage if storage is not None else MemoryStorage()
        self._log = RaftLog.from_storage(storage)
        hs = storage.hard_state
        self._term = hs.term
        self._vote: str | None = hs.vote or None
        if self._is_fresh(storage) and config.members():
            self._log.append(bootstrap_entries(config))
            self._log.commit_to(self._log.last_index())
            self._term = max(self._term, 1)
        self._conf = self._log.conf_at()
        self._role = Role.FOLLOWER
        self._leader: str | None = None
        self._step_role: Callable[[Message], None] = self._step_follower
        self._tick_role: Callable[[], None] = self._tick_election
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._votes: dict[str, bool] = {}
        self._election_elapsed = 0
        self._randomized_timeout = election_ticks
        self._dropped = 0
        self._last_dropped: Dropped | None = None
        self._prev_hard = hs
        self._prev_soft = SoftState(None, Role.FOLLOWER)
        self._reset_leader_state()
        self._become_follower(self._term, None)

    @staticmethod
    def _is_fresh(storage: Storage) -> bool:
        return storage.last_index() == 0 and storage.hard_state == HardState()

    # -- inspection --------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def term(self) -> int:
        return self._term

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader(self) -> str | None:
        """The leader this node knows of in its term, or None."""
        return self._leader

    @property
    def is_leader(self) -> bool:
        return self._role == Role.LEADER

    @property
    def conf(self) -> ConfState:
        """The configuration in effect (its latest entry, committed or not)."""
        return self._conf

    @property
    def holds_read_lease(self) -> bool:
        """True while this leader answers reads without a heartbeat round."""
        return (self._role == Role.LEADER and self._lease is not None
                and self._lease.valid())

    @property
    def snapshot_index(self) -> int:
        """The index the log's snapshot covers (0 before any compaction)."""
        return self._log.snapshot.index

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index`` (0 for index 0), or None if it
        is compacted away or beyond the log."""
        return self._log.term(index)

    def status(self) -> Status:
        """A frozen copy of this node's state (see ready.Status)."""
        progress = {nid: PeerStatus(pr.match, pr.next, pr.state.value,
                                    pr.recent_active)
                    for nid, pr in sorted(self._progress.items())}
        log = self._log
        return Status(self._id, self._term, self._vote, self._role,
                      self._leader, log.committed, log.applied,
                      log.last_index(), log.snapshot.index, self._conf,
                      progress, self._committed_in_term(), self._dropped,
                      self._last_dropped)

    @property
    def _hard_state(self) -> HardState:
        return HardState(self._term, self._vote or "", self._log.committed)

    @property
    def _soft_state(self) -> SoftState:
        return SoftState(self._leader, self._role)

    def _promotable(self) -> bool:
        return self._id in self._conf.voters

    # -- role transitions --------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self._term:
            self._term = term
            self._vote = None
        self._leader = None
        self._election_elapsed = 0
        self._randomized_timeout = self._rng.randrange(
            self._election_ticks, 2 * self._election_ticks)
        self._votes = {}
        self._reset_leader_state()

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self._role, self._leader = Role.FOLLOWER, leader
        self._step_role, self._tick_role = self._step_follower, self._tick_election

    def _become_pre_candidate(self) -> None:
        self._role, self._leader = Role.PRE_CANDIDATE, None
        self._votes = {}
        self._reset_leader_state()  # campaign() may be called on a leader
        self._randomized_timeout = self._rng.randrange(
            self._election_ticks, 2 * self._election_ticks)
        self._step_role = self._step_pre_candidate
        self._tick_role = self._tick_election

    def _become_candidate(self) -> None:
        self._reset(self._term + 1)
        self._role, self._vote = Role.CANDIDATE, self._id
        self._step_role, self._tick_role = self._step_candidate, self._tick_election

    def _become_leader(self) -> None:
        self._reset(self._term)
        self._role, self._leader = Role.LEADER, self._id
        self._step_role, self._tick_role = self._step_leader, self._tick_leader
        self._start_leading()

    # -- ticking -----------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick. With lease reads on, ticks
        must follow real time: deliver every tick that passed before any
        other call (see doozertw.consensus.lease)."""
        self._ticks_alive += 1
        self._tick_role()

    def _tick_election(self) -> None:
        """Followers and candidates: campaign when the election timeout
        passes without a word from a leader."""
        self._election_elapsed += 1
        if self._promotable() and self._election_elapsed >= self._randomized_timeout:
            self._election_elapsed = 0
            self.campaign()

    # -- elections ---------------------------------------------------------

    def campaign(self, transfer: bool = False) -> None:
        """Start an election (a pre-vote round first, if enabled and not a
        leadership ``transfer``); a non-voter does nothing."""
        if not self._promotable():
            return
        if self._pre_vote and not transfer:
            self._become_pre_candidate()
            self._request_votes(self._term + 1, pre=True)
        else:
            self._become_candidate()
            self._request_votes(self._term, pre=False, transfer=transfer)

    def _request_votes(self, term: int, pre: bool, transfer: bool = False) -> None:
        if self._record_vote(self._id, True):
            return
        last_index, last_term = self._log.last_index(), self._log.last_term()
        for v in sorted(self._conf.voters - {self._id}):
            if pre:
                self._send(msg.PreVote(self._id, v, term, last_index, last_term))
            else:
                self._send(msg.RequestVote(self._id, v, term, last_index,
                                           last_term, transfer))

    def _record_vote(self, voter: str, granted: bool) -> bool:
        """Count a vote; returns True if the election was decided."""
        self._votes.setdefault(voter, granted)
        voters = self._conf.voters
        yes = sum(1 for v, g in self._votes.items() if g and v in voters)
        no = sum(1 for v, g in self._votes.items() if not g and v in voters)
        if yes >= quorum_size(voters):
            if self._role == Role.PRE_CANDIDATE:
                self._become_candidate()
                self._request_votes(self._term, pre=False)
            else:
                self._become_leader()
            return True
        if no > len(voters) - quorum_size(voters):
            self._become_follower(self._term, None)
            return True
        return False

    def _handle_vote_request(self, m: msg.PreVote | msg.RequestVote) -> None:
        pre = isinstance(m, msg.PreVote)
        can_vote = (self._vote == m.src
                    or (self._vote is None and self._leader is None)
                    or (pre and m.term > self._term))
        granted = can_vote and self._log.is_up_to_date(m.last_index, m.last_term)
        if granted and not pre:
            self._election_elapsed = 0
            self._vote = m.src
        term = m.term if granted else self._term
        if pre:
            self._send(msg.PreVoteResponse(self._id, m.src, term, granted))
        else:
            self._send(msg.RequestVoteResponse(self._id, m.src, term, granted))

    # -- stepping ----------------------------------------------------------

    def step(self, m: Message) -> Dropped | None:
        """Handle one message from a peer; returns what describes it if it
        was refused (for the driver to log), else None.

        Never raises for a message the codec decodes: a message no correct
        peer could send (``validate.problem``), or one that would break a
        log invariant (rewrite committed entries, an impossible membership
        change), is refused: dropped, counted in ``status().dropped`` and
        described in ``status().last_dropped``.
        """
        before = self._dropped
        self._step(m)
        return self._last_dropped if self._dropped != before else None

    def _step(self, m: Message) -> None:
        reason = problem(m)
        if reason is not None:
            self._drop(m, reason)
            return
        if m.dst != self._id:
            return
        if m.term > self._term:
            if not self._accept_higher_term(m):
                return
        elif m.term < self._term:
            self._handle_stale(m)
            return
        if isinstance(m, (msg.PreVote, msg.RequestVote)):
            self._handle_vote_request(m)
        else:
            self._step_role(m)

    def _drop(self, m: Message, reason: str) -> None:
        self._dropped += 1
        self._last_dropped = Dropped(type(m).__name__, m.src, reason)

    def _accept_higher_term(self, m: Message) -> bool:
        """Adopt m.term where appropriate; False means drop the message."""
        if isinstance(m, (msg.PreVote, msg.RequestVote)):
            forced = isinstance(m, msg.RequestVote) and m.transfer
            if self._in_lease() and not forced:
                return False
        if isinstance(m, msg.PreVote):
            return True
        if isinstance(m, msg.PreVoteResponse) and m.granted:
            return True
        leader = m.src if isinstance(m, _LEADER_MESSAGES) else None
        self._become_follower(m.term, leader)
        return True

    def _in_lease(self) -> bool:
        """Refuse (pre)votes now? With check-quorum: while the leader was
        heard from within an election timeout; with lease reads also during
        this node's first election timeout (a restarted voter forgot whom
        it heard from, and a leader's lease may rest on its answer)."""
        if not self._check_quorum:
            return False
        if self._leader is not None and self._election_elapsed < self._election_ticks:
            return True
        return self._lease_reads and self._ticks_alive < self._election_ticks

    def _handle_stale(self, m: Message) -> None:
        if (self._check_quorum or self._pre_vote) and isinstance(
                m, (msg.AppendEntries, msg.Heartbeat)):
            # Tell a deposed leader about the newer term.
            self._send(msg.AppendEntriesResponse(self._id, m.src, self._term, 0))
        elif isinstance(m, msg.PreVote):
            self._send(msg.PreVoteResponse(self._id, m.src, self._term, False))
        elif isinstance(m, msg.RequestVote):
            self._send(msg.RequestVoteResponse(self._id, m.src, self._term, False))

    def _step_pre_candidate(self, m: Message) -> None:
        if isinstance(m, msg.PreVoteResponse):
            self._record_vote(m.src, m.granted)
        else:
            self._step_campaigning(m)

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, msg.RequestVoteResponse):
            self._record_vote(m.src, m.granted)
        else:
            self._step_campaigning(m)

    def _step_campaigning(self, m: Message) -> None:
        """What pre-candidates and candidates do alike: a leader of this
        term makes them followers; late read answers still count."""
        if isinstance(m, _LEADER_MESSAGES):
            self._become_follower(self._term, m.src)
            self._step_follower(m)
        elif isinstance(m, msg.ReadIndexResponse):
            self._read_states.append(ReadState(m.ctx, m.index))

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, _LEADER_MESSAGES):
            self._election_elapsed = 0
            self._leader = m.src
            if isinstance(m, msg.AppendEntries):
                self._handle_append(m)
            elif isinstance(m, msg.Heartbeat):
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif isinstance(m, msg.TimeoutNow):
            if m.src == self._leader:
                self.campaign(transfer=True)
            else:
                self._drop(m, "TimeoutNow not from the leader")
        elif isinstance(m, msg.ReadIndexResponse):
            self._read_states.append(ReadState(m.ctx, m.index))

    def _handle_append(self, m: msg.AppendEntries) -> None:
        log = self._log
        if m.prev_index < log.committed:
            self._send(msg.AppendEntriesResponse(
                self._id, m.src, self._term, log.committed))
            return
        reason = self._unsafe_append(m)
        if reason is not None:
            self._drop(m, reason)
            return
        last = log.maybe_append(m.prev_index, m.prev_term, m.entries)
        if last is None:
            hint = min(m.prev_index, log.last_index())
            hint, hint_term = log.find_conflict_by_term(hint, m.prev_term)
            self._send(msg.AppendEntriesResponse(
                self._id, m.src, self._term, m.prev_index, True, hint,
                hint_term or 0))
            return
        self._refresh_conf(m.entries)
        log.commit_to(min(m.commit, last))
        self._send(msg.AppendEntriesResponse(self._id, m.src, self._term, last))

    def _unsafe_append(self, m: msg.AppendEntries) -> str | None:
        """Why appending ``m.entries`` (prev_index >= commit) would break the
        log, or None: a configuration change that cannot apply
        (``ConfState.apply`` would raise later). No entry is committed here:
        validate makes them contiguous from prev_index + 1 > commit."""
        log = self._log
        if not log.matches(m.prev_index, m.prev_term):
            return None  # rejected without touching the log
        effective: list[Entry] = []
        for i, e in enumerate(m.entries):
            if log.term(e.index) != e.term:
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

    def _handle_heartbeat(self, m: msg.Heartbeat) -> None:
        last = self._log.last_index()
        if m.commit > last:
            # The leader saw us match beyond our log in this term: our
            # state was lost (a "lose everything" restart).
            self._send(msg.AppendEntriesResponse(
                self._id, m.src, self._term, m.commit, True, last,
                self._log.last_term(), reset=True))
        self._log.commit_to(min(m.commit, last))
        self._send(msg.HeartbeatResponse(self._id, m.src, self._term, m.ctx))

    def _handle_snapshot(self, m: msg.InstallSnapshot) -> None:
        snap = m.snapshot
        if snap.index > self._log.committed:
            if self._log.matches(snap.index, snap.term):
                self._log.commit_to(snap.index)
            else:
                self._log.restore(snap)
                self._conf = snap.meta.conf
        self._send(msg.InstallSnapshotResponse(
            self._id, m.src, self._term, self._log.committed))

    def _refresh_conf(self, new_entries: Sequence[Entry] = ()) -> None:
        """Recompute the configuration if the log's conf entries changed."""
        if self._log.conf_dirty or any(
                e.kind == EntryKind.CONF_CHANGE for e in new_entries):
            self._log.conf_dirty = False
            self._conf = self._log.conf_at()
            if self._role == Role.LEADER:
                self._sync_progress()

    # -- client operations -------------------------------------------------

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append ``data`` as a new entry; returns (index, term). Raises
        NotLeader if this node cannot accept proposals."""
        return self.propose_batch([data])[0]

    def propose_batch(self, datas: Sequence[bytes]) -> list[tuple[int, int]]:
        """Append several entries at once (one replication round for all);
        returns their (index, term) in order. Raises NotLeader."""
        self._check_can_propose()
        first = self._log.last_index() + 1
        entries = [Entry(self._term, first + i, EntryKind.NORMAL, bytes(d))
                   for i, d in enumerate(datas)]
        if entries:
            self._append(*entries)
            self._bcast_append()
        return [(e.index, e.term) for e in entries]

    def propose_conf_change(self, change: ConfChange) -> tuple[int, int]:
        """Propose one membership change; returns (index, term). Raises
        NotLeader, ConfChangeInProgress or InvalidConfChange."""
        self._check_can_propose()
        if self._log.has_conf_change_after(self._log.committed):
            raise ConfChangeInProgress("a configuration change is pending")
        if not self._committed_in_term():
            raise ConfChangeInProgress("leader has not committed in its term")
        validate_change(self._conf, change)
        index = self._log.last_index() + 1
        self._append(Entry(self._term, index, EntryKind.CONF_CHANGE,
                           change.encode()))
        self._bcast_append()
        return index, self._term

    def _check_can_propose(self) -> None:
        if self._role != Role.LEADER:
            raise NotLeader(self._leader)
        if self._id not in self._conf.voters:
            raise NotLeader(None)

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read point for ``ctx`` (unique per request
        cluster-wide). The answer comes later as a ReadState in a Ready;
        requests are dropped if leadership changes, so the caller retries
        after a timeout. Raises NotLeader(None) if no leader is known, and
        ValueError for an empty ``ctx`` (a heartbeat's "no read") or one
        shaped like a lease round's. A leader holding a read lease answers
        at once (``lease_reads``)."""
        if not ctx:
            raise ValueError("read ctx must not be empty")
        if is_lease_ctx(ctx):
            raise ValueError("read ctx must not start with the lease prefix")
        if self._role == Role.LEADER:
            self._leader_read(ctx, self._id)
        elif self._leader is None:
            raise NotLeader(None)
        else:
            self._send(msg.ReadIndexRequest(self._id, self._leader, self._term, ctx))

    def transfer_leadership(self, to: str) -> bool:
        """Ask voter ``to`` to take over at once; True if asked, False if it
        is not caught up yet (it is sent what it lacks; ask again later).
        Raises NotLeader or InvalidConfChange (``to`` is no other voter)."""
        if self._role != Role.LEADER:
            raise NotLeader(self._leader)
        if to not in self._conf.voters or to == self._id:
            raise InvalidConfChange(f"{to} is not another voter")
        if self._match_of(to) != self._log.last_index():
            self._send_append(to)
            return False
        if self._lease is not None:
            self._lease.revoke()  # ``to`` may be elected before it would expire
        self._send(msg.TimeoutNow(self._id, to, self._term))
        return True

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Replace entries up to ``index`` (<= applied) by a snapshot whose
        application state is ``data``; returns the Snapshot for the driver
        to keep (``storage.compact(snapshot)``)."""
        return self._log.compact(index, bytes(data), self._log.conf_at(index))

    # -- Ready -------------------------------------------------------------

    def _send(self, m: Message) -> None:
        self._msgs.append(m)

    def has_ready(self) -> bool:
        """True if ``ready()`` would return a non-empty Ready."""
        log = self._log
        return bool(self._msgs or self._read_states
                    or log.unstable_snapshot is not None
                    or log.stable < log.last_index()
                    or log.committed > log.applied
                    or self._hard_state != self._prev_hard
                    or self._soft_state != self._prev_soft)

    def ready(self) -> Ready:
        """Everything the driver must do now. Messages and read states are
        handed over (not repeated); call advance(ready) when done."""
        hard, soft = self._hard_state, self._soft_state
        rd = Ready(
            messages=tuple(self._msgs),
            entries=tuple(self._log.unstable_entries()),
            hard_state=hard if hard != self._prev_hard else None,
            committed_entries=tuple(self._log.next_committed(
                self._max_apply_per_ready)),
            snapshot=self._log.unstable_snapshot,
            read_states=tuple(self._read_states),
            soft_state=soft if soft != self._prev_soft else None,
        )
        self._msgs = []
        self._read_states = []
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver has persisted, sent and applied ``rd``."""
        log = self._log
        if rd.snapshot is not None:
            if log.unstable_snapshot is rd.snapshot:
                log.unstable_snapshot = None
            if rd.snapshot.index > log.applied:
                log.applied = rd.snapshot.index
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
            if self._role == Role.LEADER:
                self._self_persisted()
        if rd.committed_entries:
            last_index = rd.committed_entries[-1].index
            if last_index > log.applied:
                log.applied_to(last_index)
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state


__all__ = ["RaftNode", "bootstrap_entries"]
