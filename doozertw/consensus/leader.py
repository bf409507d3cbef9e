"""The leader's half of RaftNode: replication, commit, heartbeats, ReadIndex.

``LeaderMixin`` is mixed into RaftNode to keep each module short. It owns
the state only a leader uses (``_progress``, ``_read_only``,
``_pending_reads``, ``_heartbeat_elapsed``: set up by
``_reset_leader_state`` on every term or role change) and reads the node
state RaftNode owns, declared below. Its step and tick functions run only
while the role is LEADER; the transport feedback methods are public.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from doozertw.consensus import messages as msg
from doozertw.consensus.log import RaftLog
from doozertw.consensus.messages import ConfState, Entry, Message
from doozertw.consensus.progress import (
    Progress, ProgressState, committed_index, has_quorum,
)
from doozertw.consensus.lease import LEASE_MARGIN_TICKS, ReadLease
from doozertw.consensus.readonly import ReadOnly
from doozertw.consensus.ready import ReadState, Role


class LeaderMixin:
    """Leader behaviour of RaftNode."""

    # Node state owned (and initialised) by RaftNode.__init__.
    _id: str
    _term: int
    _role: Role
    _log: RaftLog
    _conf: ConfState
    _read_states: list[ReadState]
    _election_elapsed: int
    _election_ticks: int
    _heartbeat_ticks: int
    _check_quorum: bool
    _lease_reads: bool
    _max_entries_per_msg: int
    _max_bytes_per_msg: int
    _max_inflight_msgs: int

    if TYPE_CHECKING:  # RaftNode's methods this half calls
        def _send(self, m: Message) -> None: ...
        def _drop(self, m: Message, reason: str) -> None: ...
        def _become_follower(self, term: int, leader: str | None) -> None: ...
        def _refresh_conf(self, new_entries: Sequence[Entry] = ()) -> None: ...

    def _reset_leader_state(self) -> None:
        """Forget everything a leader tracks (a new term or role)."""
        self._progress: dict[str, Progress] = {}
        self._read_only = ReadOnly()
        self._pending_reads: list[tuple[bytes, str]] = []
        self._heartbeat_elapsed = 0
        self._lease: ReadLease | None = (
            ReadLease(self._election_ticks - LEASE_MARGIN_TICKS) if self._lease_reads else None)

    def _start_leading(self) -> None:
        """Just elected: track every member and append a no-op of the new
        term, which lets earlier entries commit (§5.4.2 / §8)."""
        last = self._log.last_index()
        for nid in self._conf.members():
            self._progress[nid] = self._new_progress(last + 1)
        if self._id in self._progress:
            self._progress[self._id].match = self._log.stable
            self._progress[self._id].become_replicate()
        self._append(Entry(self._term, last + 1))
        self._bcast_append()

    def _new_progress(self, next_index: int) -> Progress:
        return Progress(next_index, self._max_inflight_msgs)

    def _committed_in_term(self) -> bool:
        """Is the commit index at an entry of the current term?"""
        return self._log.term(self._log.committed) == self._term

    def _tick_leader(self) -> None:
        if self._lease is not None:
            self._lease.tick()
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        for pr in self._progress.values():
            if pr.state == ProgressState.SNAPSHOT:
                pr.snapshot_ticks += 1
                if pr.snapshot_ticks > self._election_ticks:
                    pr.become_probe()  # the snapshot or its answer was lost
        if self._election_elapsed >= self._election_ticks:
            self._election_elapsed = 0
            if self._check_quorum and not self._quorum_active():
                self._become_follower(self._term, None)
                return
        if self._heartbeat_elapsed >= self._heartbeat_ticks:
            self._heartbeat_elapsed = 0
            if self._lease is not None and not self._read_only:
                self._start_lease_round()
            else:
                self._bcast_heartbeat()

    def _start_lease_round(self) -> None:
        """A heartbeat whose quorum of answers renews the read lease (a
        ReadIndex round nobody waits for)."""
        assert self._lease is not None
        ctx = self._lease.next_ctx()
        self._read_only.add(ctx, self._log.committed, "", self._lease.now)
        if self._id in self._conf.voters:
            self._read_only.ack(ctx, self._id)
        self._bcast_heartbeat()  # carries the newest pending round: this one

    def _quorum_active(self) -> bool:
        """Check-quorum: did a quorum of voters talk to us this timeout?"""
        active = {nid for nid, pr in self._progress.items()
                  if pr.recent_active or nid == self._id}
        for nid, pr in self._progress.items():
            pr.recent_active = nid == self._id
        return has_quorum(self._conf.voters, active)

    def _step_leader(self, m: Message) -> None:
        pr = self._progress.get(m.src)
        if pr is None:
            return  # not a member: nothing it says concerns the leader
        if isinstance(m, msg.ReadIndexRequest):
            self._leader_read(m.ctx, m.src)
            return
        if isinstance(m, msg.InstallSnapshotResponse) or (
                isinstance(m, msg.AppendEntriesResponse) and not m.reject):
            if m.index > self._log.last_index():
                self._drop(m, "acknowledges entries the leader does not have")
                return
        pr.recent_active = True
        if isinstance(m, msg.AppendEntriesResponse):
            self._handle_append_response(m, pr)
        elif isinstance(m, msg.HeartbeatResponse):
            self._handle_heartbeat_response(m, pr)
        elif isinstance(m, msg.InstallSnapshotResponse):
            pr.maybe_update(m.index)
            if pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
                pr.become_probe()
            self._after_ack(m.src, pr, was_paused=True)

    def _handle_append_response(self, m: msg.AppendEntriesResponse,
                                pr: Progress) -> None:
        if m.reset:
            pr.match = 0
            pr.become_probe()
            pr.next = m.hint_index + 1
            self._send_append(m.src)
            return
        if m.reject:
            probe = m.hint_index
            if m.hint_term > 0:
                probe, _ = self._log.find_conflict_by_term(m.hint_index, m.hint_term)
            if pr.maybe_decrease(m.index, probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.src)
            return
        was_paused = pr.is_paused()
        updated = pr.maybe_update(m.index)
        confirmed = pr.state == ProgressState.PROBE and pr.match == m.index
        if not updated and not confirmed:
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        self._after_ack(m.src, pr, was_paused)

    def _after_ack(self, to: str, pr: Progress, was_paused: bool) -> None:
        if self._maybe_commit():
            if self._role != Role.LEADER:
                return
            self._bcast_append()
        elif was_paused:
            self._send_append(to)
        if to in self._progress:
            while self._send_append(to, send_empty=False):
                pass

    def _handle_heartbeat_response(self, m: msg.HeartbeatResponse,
                                   pr: Progress) -> None:
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first()
        if pr.match < self._log.last_index():
            self._send_append(m.src)
        if not m.ctx or m.src not in self._conf.voters:
            return
        acks = self._read_only.ack(m.ctx, m.src)
        if acks is not None and has_quorum(self._conf.voters, acks):
            released = self._read_only.release_through(m.ctx)
            if self._lease is not None:
                self._lease.confirmed(released[-1].sent)
            for read in released:
                if read.requester:
                    self._answer_read(read.ctx, read.requester, read.index)

    def _maybe_commit(self) -> bool:
        """Commit the quorum-replicated index if it is of the current term
        (§5.4.2); True if the commit index advanced."""
        mci = committed_index(self._conf.voters, self._match_of)
        if mci <= self._log.committed or self._log.term(mci) != self._term:
            return False
        self._log.commit_to(mci)
        self._on_leader_commit()
        return True

    def _match_of(self, nid: str) -> int:
        pr = self._progress.get(nid)
        return pr.match if pr else 0

    def _on_leader_commit(self) -> None:
        if self._pending_reads and self._committed_in_term():
            pending, self._pending_reads = self._pending_reads, []
            for ctx, requester in pending:
                self._leader_read(ctx, requester)
        if (self._id not in self._conf.voters
                and not self._log.has_conf_change_after(self._log.committed)):
            self._step_down_removed()

    def _step_down_removed(self) -> None:
        """Our removal is committed: hand over to the most caught-up voter.
        The removal is the leader's last entry (a non-voter cannot propose)
        and a quorum of the remaining voters (never empty: the last voter
        cannot be removed) acknowledged it, so that voter has the whole log."""
        best = max(sorted(self._conf.voters), key=self._match_of)
        self._send(msg.TimeoutNow(self._id, best, self._term))
        self._become_follower(self._term, None)

    def _sync_progress(self) -> None:
        if self._lease is not None:
            self._lease.restart()  # only rounds sent to the new voters count
        last = self._log.last_index()
        members = self._conf.members()
        for nid in list(self._progress):
            if nid not in members:
                del self._progress[nid]
        for nid in members:
            if nid not in self._progress:
                self._progress[nid] = self._new_progress(last + 1)

    def _append(self, *entries: Entry) -> None:
        """Append to the leader's log. The leader counts itself toward the
        commit quorum only for entries its driver has persisted
        (``_self_persisted``, called from ``advance``), so it may replicate
        while its own fsync is in flight (Raft thesis §10.2.1)."""
        self._log.append(list(entries))
        self._refresh_conf(entries)
        self._maybe_commit()

    def _self_persisted(self) -> None:
        """The driver made the log durable up to ``log.stable``."""
        pr = self._progress.get(self._id)
        if pr is not None and pr.maybe_update(self._log.stable):
            if self._maybe_commit() and self._role == Role.LEADER:
                self._bcast_append()  # the followers learn the commit now

    def _bcast_append(self) -> None:
        """Send every follower what it lacks, up to its inflight window."""
        for nid in sorted(self._progress):
            if nid != self._id and self._send_append(nid):
                pr = self._progress[nid]
                while (pr.state == ProgressState.REPLICATE
                       and self._send_append(nid, send_empty=False)):
                    pass

    def _bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self._read_only.last_ctx()
        for nid in sorted(self._progress):
            if nid != self._id:
                pr = self._progress[nid]
                commit = min(pr.match, self._log.committed)
                self._send(msg.Heartbeat(self._id, nid, self._term, commit, ctx))

    def _send_append(self, to: str, send_empty: bool = True) -> bool:
        """Send what ``to`` needs next; True if a message was sent."""
        pr = self._progress[to]
        if pr.is_paused():
            return False
        last = self._log.last_index()
        pr.next = min(pr.next, last + 1)
        prev_term = self._log.term(pr.next - 1)
        if prev_term is None:
            return self._send_snapshot(to, pr)
        entries: list[Entry] = []
        if pr.next <= last:
            entries = self._log.slice(pr.next, last + 1, self._max_entries_per_msg,
                                     self._max_bytes_per_msg)
        if not entries and not send_empty:
            return False
        self._send(msg.AppendEntries(self._id, to, self._term, pr.next - 1,
                                     prev_term, self._log.committed, entries))
        if entries:
            pr.sent_entries(entries[-1].index)
        return True

    def _send_snapshot(self, to: str, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        snap = self._log.snapshot
        self._send(msg.InstallSnapshot(self._id, to, self._term, snap))
        pr.become_snapshot(snap.index)
        return True

    def _leader_read(self, ctx: bytes, requester: str) -> None:
        if not self._committed_in_term():
            self._pending_reads.append((ctx, requester))
            return
        index = self._log.committed
        if self._conf.voters == {self._id} or (
                self._lease is not None and self._lease.valid()):
            self._answer_read(ctx, requester, index)
            return
        sent = self._lease.now if self._lease is not None else 0
        self._read_only.add(ctx, index, requester, sent)
        if self._id in self._conf.voters:
            self._read_only.ack(ctx, self._id)
        self._bcast_heartbeat(ctx)

    def _answer_read(self, ctx: bytes, requester: str, index: int) -> None:
        if requester == self._id:
            self._read_states.append(ReadState(ctx, index))
        else:
            self._send(msg.ReadIndexResponse(self._id, requester, self._term,
                                             ctx, index))

    # -- transport feedback --------------------------------------------------

    def report_unreachable(self, peer: str) -> None:
        """The transport could not deliver to ``peer``: stop streaming to it
        and probe once it answers again."""
        pr = self._progress.get(peer)  # empty unless leading
        if pr is not None and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, peer: str, ok: bool) -> None:
        """The transport finished (``ok``) or failed sending a snapshot to
        ``peer``; on failure the leader probes (and resends) at once."""
        pr = self._progress.get(peer)  # empty unless leading
        if pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
