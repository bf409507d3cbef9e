"""The leader's half of RaftNode: replication, commit, heartbeats, ReadIndex.

``LeaderMixin`` is mixed into RaftNode and shares its state; it exists to
keep each module short. Everything here runs only while role is LEADER.
"""

from __future__ import annotations

from doozertw.consensus import messages as msg
from doozertw.consensus.progress import (
    ProgressState, committed_index, has_quorum,
)
from doozertw.consensus.ready import ReadState, Role


class LeaderMixin:
    """Leader behaviour of RaftNode (see raft.py for the state it uses)."""

    def _tick_leader(self):
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        for pr in self.progress.values():
            if pr.state == ProgressState.SNAPSHOT:
                pr.snapshot_ticks += 1
                if pr.snapshot_ticks > self.election_ticks:
                    pr.become_probe()  # the snapshot or its answer was lost
        if self.election_elapsed >= self.election_ticks:
            self.election_elapsed = 0
            if self.check_quorum and not self._quorum_active():
                self.become_follower(self.term, None)
                return
        if self.heartbeat_elapsed >= self.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()

    def _quorum_active(self):
        """Check-quorum: did a quorum of voters talk to us this timeout?"""
        active = {nid for nid, pr in self.progress.items()
                  if pr.recent_active or nid == self.id}
        for nid, pr in self.progress.items():
            pr.recent_active = nid == self.id
        return has_quorum(self.conf.voters, active)

    def _step_leader(self, m):
        pr = self.progress.get(m.src)
        if pr is None:
            return  # not a member: nothing it says concerns the leader
        if isinstance(m, msg.ReadIndexRequest):
            self._leader_read(m.ctx, m.src)
            return
        acked = isinstance(m, msg.InstallSnapshotResponse) or (
            isinstance(m, msg.AppendEntriesResponse) and not m.reject)
        if acked and m.index > self.log.last_index():
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

    def _handle_append_response(self, m, pr):
        if m.reset:
            pr.match = 0
            pr.become_probe()
            pr.next = m.hint_index + 1
            self._send_append(m.src)
            return
        if m.reject:
            probe = m.hint_index
            if m.hint_term > 0:
                probe, _ = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
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

    def _after_ack(self, to, pr, was_paused):
        if self._maybe_commit():
            if self.role != Role.LEADER:
                return
            self._bcast_append()
        elif was_paused:
            self._send_append(to)
        if to in self.progress:
            while self._send_append(to, send_empty=False):
                pass

    def _handle_heartbeat_response(self, m, pr):
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first()
        if pr.match < self.log.last_index():
            self._send_append(m.src)
        if not m.ctx or m.src not in self.conf.voters:
            return
        acks = self.read_only.ack(m.ctx, m.src)
        if acks is not None and has_quorum(self.conf.voters, acks):
            for read in self.read_only.release_through(m.ctx):
                self._answer_read(read.ctx, read.requester, read.index)

    def _maybe_commit(self):
        """Commit the quorum-replicated index if it is of the current term
        (§5.4.2); True if the commit index advanced."""
        mci = committed_index(self.conf.voters, self._match_of)
        if mci <= self.log.committed or self.log.term(mci) != self.term:
            return False
        self.log.commit_to(mci)
        self._on_leader_commit()
        return True

    def _match_of(self, nid):
        pr = self.progress.get(nid)
        return pr.match if pr else 0

    def _on_leader_commit(self):
        if self.pending_reads and self.committed_in_term():
            pending, self.pending_reads = self.pending_reads, []
            for ctx, requester in pending:
                self._leader_read(ctx, requester)
        if (self.id not in self.conf.voters
                and not self.log.has_conf_change_after(self.log.committed)):
            self._step_down_removed()

    def _step_down_removed(self):
        """Our removal is committed: hand over to the most caught-up voter."""
        best = max(sorted(self.conf.voters), key=self._match_of, default=None)
        if best is not None and self._match_of(best) == self.log.last_index():
            self._send(msg.TimeoutNow(self.id, best, self.term))
        self.become_follower(self.term, None)

    def _sync_progress(self):
        last = self.log.last_index()
        members = self.conf.members()
        for nid in list(self.progress):
            if nid not in members:
                del self.progress[nid]
        for nid in members:
            if nid not in self.progress:
                self.progress[nid] = self._new_progress(nid, last + 1)
            self.progress[nid].is_learner = nid in self.conf.learners

    def _append(self, *entries):
        """Append to the leader's log. The leader counts itself toward the
        commit quorum only for entries its driver has persisted
        (``_self_persisted``, called from ``advance``), so it may replicate
        while its own fsync is in flight (Raft thesis §10.2.1)."""
        self.log.append(list(entries))
        self._refresh_conf(entries)
        self._maybe_commit()

    def _self_persisted(self):
        """The driver made the log durable up to ``log.stable``."""
        pr = self.progress.get(self.id)
        if pr is not None and pr.maybe_update(self.log.stable):
            self._maybe_commit()

    def _bcast_append(self):
        """Send every follower what it lacks, up to its inflight window."""
        for nid in sorted(self.progress):
            if nid != self.id and self._send_append(nid):
                pr = self.progress[nid]
                while (pr.state == ProgressState.REPLICATE
                       and self._send_append(nid, send_empty=False)):
                    pass

    def _bcast_heartbeat(self, ctx=None):
        if ctx is None:
            ctx = self.read_only.last_ctx()
        for nid in sorted(self.progress):
            if nid != self.id:
                pr = self.progress[nid]
                commit = min(pr.match, self.log.committed)
                self._send(msg.Heartbeat(self.id, nid, self.term, commit, ctx))

    def _send_append(self, to, send_empty=True):
        """Send what ``to`` needs next; True if a message was sent."""
        pr = self.progress[to]
        if pr.is_paused():
            return False
        last = self.log.last_index()
        pr.next = min(pr.next, last + 1)
        prev_term = self.log.term(pr.next - 1)
        if prev_term is None:
            return self._send_snapshot(to, pr)
        entries = ()
        if pr.next <= last:
            entries = self.log.slice(pr.next, last + 1, self.max_entries_per_msg,
                                     self.max_bytes_per_msg)
        if not entries and not send_empty:
            return False
        self._send(msg.AppendEntries(self.id, to, self.term, pr.next - 1,
                                     prev_term, self.log.committed, entries))
        if entries:
            pr.sent_entries(entries[-1].index)
        return True

    def _send_snapshot(self, to, pr):
        if not pr.recent_active:
            return False
        snap = self.log.snapshot
        self._send(msg.InstallSnapshot(self.id, to, self.term, snap))
        pr.become_snapshot(snap.index)
        return True


    def _leader_read(self, ctx, requester):
        if not self.committed_in_term():
            self.pending_reads.append((ctx, requester))
            return
        index = self.log.committed
        if self.conf.voters == {self.id}:
            self._answer_read(ctx, requester, index)
            return
        self.read_only.add(ctx, index, requester)
        if self.id in self.conf.voters:
            self.read_only.ack(ctx, self.id)
        self._bcast_heartbeat(ctx)

    def _answer_read(self, ctx, requester, index):
        if requester == self.id:
            self.read_states.append(ReadState(ctx, index))
        else:
            self._send(msg.ReadIndexResponse(self.id, requester, self.term,
                                             ctx, index))

    # -- transport feedback --------------------------------------------------

    def report_unreachable(self, peer):
        """The transport could not deliver to ``peer``: stop streaming to it
        and probe once it answers again."""
        pr = self.progress.get(peer) if self.role == Role.LEADER else None
        if pr is not None and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, peer, ok):
        """The transport finished (``ok``) or failed sending a snapshot to
        ``peer``; on failure the leader probes (and resends) at once."""
        pr = self.progress.get(peer) if self.role == Role.LEADER else None
        if pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
