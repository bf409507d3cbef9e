"""ClusterDriver: runs a pure RaftNode on a reactor and a peer transport.

The driver ticks the node on the reactor's clock, feeds it the Raft
messages received from peers, and handles every Ready as
doozertw.consensus.ready prescribes: send the leader's replication
messages at once when allowed, persist the rest through a Persister (a
writer thread for a disk storage: the reactor never waits for an fsync),
then restore a received snapshot into the store, send the other messages,
apply committed entries, hand over read states, and ``advance``. One Ready
is in flight at a time; ticks and peer messages keep reaching the node
meanwhile and go out with the next one (group commit). A Ready that
changes only the commit index is written in order but not waited for.

Contracts:

- ``send(name, payload)`` is the transport's send; Raft messages go to the
  node name of their destination member id (``name~incarnation``).
- ``storage_provider.for_member(member_id)`` returns the (storage,
  persister) the node of that member id uses (doozertw.cluster.storage);
  a storage with state is restored into the store before Raft starts.
- A proposal (origin, pid) is applied once, however many entries carry
  it (doozertw.cluster.dedup); snapshots hold the store and that table.
- Listeners are called after ``advance``, never between ``ready()`` and
  ``advance()``, so they may call back into the driver:
  ``on_apply(index, term, proposal, outcome)`` for every applied entry
  (``proposal`` and ``outcome`` are None for no-ops and conf changes),
  ``on_read_state(ReadState)``, ``on_role(SoftState)``, ``on_envelope[type]
  (from_name, envelope)``.
- Storage errors: ``StorageFull`` sets ``disk_full`` (writes are refused)
  and retries the same Ready every ``retry_delay`` seconds until it fits;
  any other failure (EIO, a failed fsync) is fatal: the driver stops and
  calls ``on_fatal(failure)``; an fsync is never retried.
- The Raft node exists only after ``start(conf)``; before that, Raft
  messages are dropped and ``raft`` is None.
- ``snapshot_seconds`` (doozertw.status.Durations) times each snapshot
  this node takes, on the reactor's clock: from serializing the store to
  the storage call that makes it durable returning (a failed one is not
  counted).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from doozertw.cluster import envelope as env
from doozertw.cluster.dedup import EntryApplier
from doozertw.cluster.chunks import ChunkAssembler, ChunkRejected, ChunkSender
from doozertw.cluster.storage import MemoryProvider, is_disk_full
from doozertw.consensus import (
    ConfState, RaftNode, Role, early_send_allowed, is_leader_early_message,
)
from doozertw.consensus.codec import CodecError
from doozertw.errors import DoozerError
from doozertw.limits import DEFAULT_QUORUM_TIMEOUT
from doozertw.consensus.messages import InstallSnapshot
from doozertw.peer import PayloadTooLarge
from doozertw.status import Durations


MAX_CATCH_UP = 3
"""Election timeouts' worth of ticks delivered at most in one catch-up."""


@attrs.frozen
class Timing:
    """Clock settings: a tick is ``tick`` seconds; elections time out after
    ``election_ticks``..2x ticks; the leader heartbeats every
    ``heartbeat_ticks``; writes and linearizable reads give up after
    ``quorum_timeout`` seconds with "no quorum". ``lease_reads``: the
    leader answers linearizable reads from a read lease
    (doozertw.consensus.lease), and the node's ticks follow ``monotonic``
    (seconds; None: the reactor's clock): the ticks that passed are
    delivered before every call into Raft."""

    tick: float = 0.05
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    quorum_timeout: float = DEFAULT_QUORUM_TIMEOUT
    compact_every: int = 10_000
    compact_bytes: int = 64 * 1024 * 1024
    retry_delay: float = 1.0
    lease_reads: bool = False
    monotonic: Callable[[], float] | None = None


class ClusterDriver:
    """Drives one RaftNode; see the module docstring."""

    log = Logger()

    def __init__(self, name, store, send, reactor, rng, timing=Timing(),
                 storage_provider=None, on_fatal=None, link_view=None):
        self.name = name
        self.member_id = None
        self.store = store
        self.timing = timing
        self.reactor = reactor
        self.rng = rng
        self._life = None
        self._send_payload = send
        self.storage_provider = storage_provider or MemoryProvider()
        self.storage = None
        self.persister = None
        self.on_fatal = on_fatal
        self.failed = None
        self.disk_full = False
        self.raft = None
        self.applied = 0
        self.applier = EntryApplier(store)
        self.last_heard = {}
        self.on_apply = []
        self.on_read_state = []
        self.on_role = []
        self.on_envelope = {}
        self._applied_waiters = []
        self._after = []
        self._processing = False
        self._in_flight = None
        self._applied_bytes = 0
        self.snapshot_seconds = Durations()
        self._sent_early = False
        self._durable_hard = None
        self._ticker = None
        self._clock = timing.monotonic or reactor.seconds
        self._tick_origin = 0.0
        self._ticks_done = 0
        self.snapshots_out = ChunkSender(self.send_envelope, reactor, link_view=link_view)
        self.snapshots_in = ChunkAssembler(reactor, self._snapshot_payload)
        self.on_envelope[env.SnapshotChunk] = self._snapshot_chunk

    @property
    def life(self):
        """A random 32-bit number naming this life of the member, drawn from
        ``rng`` on first use. A node keeps its member id across restarts, so
        every id it hands out (proposal ids, read contexts) carries its life:
        nothing addressed to an earlier life can be taken for this one's."""
        if self._life is None:
            self._life = self.rng.getrandbits(32)
        return self._life

    # -- lifecycle -----------------------------------------------------------

    def start(self, member_id, conf=ConfState()):
        """Create the Raft node as ``member_id`` (this node's name, or
        ``name~incarnation``): ``conf`` founds a cluster; an empty ConfState
        waits to be added by a leader. Starts ticking."""
        if self.raft is not None:
            raise RuntimeError("already started")
        if env.name_of(member_id) != self.name:
            raise ValueError(f"member id {member_id!r} is not of node {self.name!r}")
        self.member_id = member_id
        self.storage, self.persister = self.storage_provider.for_member(member_id)
        self._restore_stored_snapshot()
        self._durable_hard = self.storage.hard_state
        t = self.timing
        self.raft = RaftNode(self.member_id, conf, self.storage, self.rng,
                             election_ticks=t.election_ticks,
                             heartbeat_ticks=t.heartbeat_ticks,
                             lease_reads=t.lease_reads)
        self._tick_origin, self._ticks_done = self._clock(), 0
        self.log.info("raft member {member} started with voters {voters} at index {index}",
                      member=self.member_id, voters=sorted(self.raft.conf.voters),
                      index=self.raft.status().last_index)
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = self.reactor
        self._ticker.start(t.tick, now=False)
        self.process()

    @property
    def duplicates(self):
        """Second copies of proposals seen in the log (applied once)."""
        return self.applier.duplicates

    def _restore_stored_snapshot(self):
        snapshot = self.storage.snapshot
        if snapshot.index > 0 and snapshot.data:
            self.applier.restore(snapshot.data)
            self.applied = snapshot.index

    def stop(self):
        """Stop ticking and let the writer finish what it has queued."""
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self.snapshots_out.stop()
        self.snapshots_in.stop()
        if self.persister is not None:
            persister, self.persister = self.persister, None
            persister.close()

    @property
    def started(self):
        return self.raft is not None

    @property
    def is_leader(self):
        return self.raft is not None and self.raft.role == Role.LEADER

    @property
    def leader(self):
        return self.raft.leader if self.raft is not None else None

    @property
    def conf(self):
        return self.raft.conf if self.raft is not None else ConfState()

    def write_refusal(self) -> str | None:
        """Why this node cannot take writes now (a full or failed disk), or
        None. Reads are not affected."""
        if self.failed is not None:
            return f"storage failed: {self.failed.getErrorMessage()}"
        if self.disk_full or self.storage_provider.space_low():
            return "disk full: no space left for the log in the data directory"
        return None

    def is_member(self):
        return self.member_id in self.conf.members()

    def _tick(self):
        try:
            if self.timing.lease_reads:
                self._catch_up()
            else:
                self.raft.tick()
            self.process()
        except Exception:
            # keep ticking: a stopped clock would silently stall this node
            self.log.failure("tick of {member} failed", member=self.member_id)

    def _catch_up(self):
        """Lease reads: tick the node once for every tick of real time that
        passed since it started (at most MAX_CATCH_UP elections' worth: enough
        for every timeout to fire), so its lease and its refusal to vote
        follow real time even after a pause or a slow callback."""
        if not self.timing.lease_reads or self.raft is None:
            return
        due = int((self._clock() - self._tick_origin) / self.timing.tick) - self._ticks_done
        if due <= 0:
            return
        self._ticks_done += due
        for _ in range(min(due, MAX_CATCH_UP * self.timing.election_ticks)):
            self.raft.tick()

    # -- calling the node ------------------------------------------------------

    def call(self, fn, *args):
        """Run ``fn(raft, *args)`` and handle the resulting Ready; returns
        its result. Must not be called from inside Ready handling."""
        if self._processing:
            raise RuntimeError("raft called between ready() and advance()")
        try:
            self._catch_up()
            return fn(self.raft, *args)
        finally:
            self.process()

    # -- transport ---------------------------------------------------------------

    def receive(self, from_name, payload) -> bool:
        """Transport callback: one payload from peer ``from_name``; False
        if it does not decode (the caller should drop that peer's link)."""
        try:
            message = env.decode_payload(payload)
        except CodecError as exc:
            self.log.warn("bad payload from {peer}: {error}", peer=from_name, error=str(exc))
            return False
        if isinstance(message, env.ENVELOPE_TYPES):
            handler = self.on_envelope.get(type(message))
            if handler is not None:
                handler(from_name, message)
            return True
        self._receive_raft(from_name, message)
        return True

    def _receive_raft(self, from_name, message):
        if env.name_of(message.src) != from_name:
            self.log.warn("peer {peer} sent a message as {src}", peer=from_name, src=message.src)
            return
        self.last_heard[message.src] = self.reactor.seconds()
        if self.raft is not None and not self._processing:
            dropped = self.call(RaftNode.step, message)
            if dropped is not None:
                self.log.warn("dropped {kind} from {peer} ({src}): {reason}",
                              kind=dropped.kind, peer=from_name, src=dropped.src,
                              reason=dropped.reason)

    def _snapshot_chunk(self, from_name, chunk):
        try:
            self.snapshots_in.receive(from_name, chunk)
        except ChunkRejected as exc:
            self.log.warn("snapshot chunk from {peer} rejected: {error}",
                          peer=from_name, error=str(exc))

    def _snapshot_payload(self, from_name, payload):
        """A reassembled payload: only a Raft InstallSnapshot may come this way."""
        try:
            message = env.decode_payload(payload) if payload[:1] == env.RAFT else None
        except CodecError as exc:
            self.log.warn("bad snapshot payload from {peer}: {error}", peer=from_name,
                          error=str(exc))
            return
        if not isinstance(message, InstallSnapshot):
            self.log.warn("peer {peer} streamed something other than a snapshot",
                          peer=from_name)
            return
        self._receive_raft(from_name, message)

    def send_envelope(self, name, envelope):
        try:
            return self._send_payload(name, env.encode_envelope(envelope))
        except (ValueError, RuntimeError) as exc:
            self.log.debug("cannot send to {peer}: {error}", peer=name, error=str(exc))
            return False

    def _send_raft(self, message):
        name = env.name_of(message.dst)
        if name == self.name:
            return  # an old incarnation of this node: nobody to deliver to
        if isinstance(message, InstallSnapshot):
            self._send_snapshot(name, message)
            return
        try:
            sent = self._send_payload(name, env.encode_raft(message))
        except PayloadTooLarge:
            self.log.error("raft message to {peer} too large", peer=message.dst)
            sent = False
        if not sent:
            self._after.append(lambda: self._unreachable(message))

    def _unreachable(self, message):
        self.raft.report_unreachable(message.dst)

    def _send_snapshot(self, name, message):
        """Stream an InstallSnapshot in chunks (doozertw.cluster.chunks). Raft
        re-sends the same snapshot every election timeout until the
        follower answers; that does not restart a transfer still running."""
        meta = message.snapshot.meta
        key = (message.dst, message.term, meta.index, meta.term)
        if self.snapshots_out.sending(name, key):
            return
        dst = message.dst
        self.snapshots_out.start(name, env.encode_raft(message),
                                 lambda ok: self._snapshot_sent(dst, ok), key=key)

    def _snapshot_sent(self, dst, ok):
        """ChunkSender's on_done (always from a reactor callback)."""
        if self.raft is None or self._processing:
            return
        if not ok:
            self.call(RaftNode.report_unreachable, dst)
        self.call(RaftNode.report_snapshot, dst, ok)

    # -- Ready ---------------------------------------------------------------------

    def process(self):
        """Take the node's next Ready unless one is being persisted; handle
        it (and any that follow while persistence completes at once)."""
        if self.raft is None or self._processing or self.failed is not None:
            return
        while self._in_flight is None and self.raft.has_ready():
            rd = self.raft.ready()
            self._in_flight = rd
            if rd.snapshot is not None and not self._snapshot_usable(rd.snapshot):
                return
            self._sent_early = early_send_allowed(rd, self._durable_hard)
            if self._sent_early:
                for message in rd.messages:
                    if is_leader_early_message(message):
                        self._send_raft(message)
            self._persist(rd)
        self._maybe_compact()

    def _snapshot_usable(self, snapshot):
        """A received snapshot must restore before it is made durable (a
        node that stored one it cannot load could never start again); one
        that does not is fatal, like a failed disk."""
        try:
            self.applier.check(snapshot.data)
        except DoozerError as exc:
            self._persist_failed(Failure(exc), None)
            return False
        return True

    def _persist(self, rd):
        if self.persister is None:
            return
        if rd.snapshot is None and not rd.entries and rd.hard_state is None:
            self._persisted(None, rd)
            return
        if self._commit_only(rd):
            self.persister.save(rd).addErrback(self._commit_save_failed)
            self._persisted(None, rd, durable=False)
            return
        d = self.persister.save(rd)
        d.addCallbacks(self._persisted, self._persist_failed,
                       callbackArgs=(rd,), errbackArgs=(rd,))
        if self._in_flight is rd:  # completes on the writer thread
            d.addCallback(lambda _: self.process())

    def _commit_only(self, rd):
        """Does ``rd`` change nothing durable but the commit index? Then its
        save is queued in order and not waited for (as etcd's MustSync): its
        entries were made durable by earlier Readys, and a node that loses
        the commit index learns it again from the leader."""
        return (rd.snapshot is None and not rd.entries and rd.hard_state is not None
                and early_send_allowed(rd, self._durable_hard))

    def _commit_save_failed(self, failure):
        if is_disk_full(failure.value):
            self.log.warn("{member}: no room to record the commit index: {error}",
                          member=self.member_id, error=str(failure.value))
            return None
        return self._persist_failed(failure, None)

    def _persisted(self, _, rd, durable=True):
        if durable and rd.hard_state is not None:
            self._durable_hard = rd.hard_state
        if durable and self.disk_full:
            self.disk_full = False
            self.log.info("{member}: the disk has room again", member=self.member_id)
        self._processing = True
        try:
            self._handle(rd)
            self.raft.advance(rd)
        finally:
            self._processing = False
            self._in_flight = None
        self._run_after()

    def _persist_failed(self, failure, rd):
        if is_disk_full(failure.value):
            if not self.disk_full:
                self.log.error("{member}: disk full, writes refused until it has room: "
                               "{error}", member=self.member_id, error=str(failure.value))
            self.disk_full = True
            self.reactor.callLater(self.timing.retry_delay, self._persist, rd)
            return None
        self.failed = failure
        self.log.critical("{member}: storage failed, stopping: {error}",
                          member=self.member_id, error=failure.getErrorMessage())
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        if self.on_fatal is not None:
            self.on_fatal(failure)
        return None

    def _handle(self, rd):
        if rd.snapshot is not None and rd.snapshot.index > self.applied:
            self.applier.restore(rd.snapshot.data)
            self.applied = rd.snapshot.index
        for message in rd.messages:
            if not (self._sent_early and is_leader_early_message(message)):
                self._send_raft(message)
        for entry in rd.committed_entries:
            self._apply(entry)
        for state in rd.read_states:
            self._after.extend(lambda s=state, f=f: f(s) for f in self.on_read_state)
        if rd.soft_state is not None:
            soft = rd.soft_state
            self.log.info("{member} is {role}, leader {leader}", member=self.member_id,
                          role=soft.role.value, leader=soft.leader)
            self._after.extend(lambda f=f: f(soft) for f in self.on_role)
        self._after.append(self._wake_applied)

    def _apply(self, entry):
        self.applied = max(self.applied, entry.index)
        self._applied_bytes += entry.size()
        proposal, outcome = self.applier.apply(entry)
        for listener in self.on_apply:
            self._after.append(
                lambda f=listener: f(entry.index, entry.term, proposal, outcome))

    def _run_after(self):
        while self._after:
            pending, self._after = self._after, []
            for action in pending:
                try:
                    action()
                except Exception:
                    self.log.failure("cluster listener failed")
            if self.raft.has_ready() and not self._processing:
                return  # process() loops again

    def _maybe_compact(self):
        """Snapshot the store every ``compact_every`` applied entries or
        ``compact_bytes`` of applied entry data, and truncate the log
        behind it (in memory now, on disk in order with the saves)."""
        if self.raft is None:
            return
        snapshot_index = self.raft.snapshot_index
        if self.applied <= snapshot_index:
            return
        if (self.applied - snapshot_index < self.timing.compact_every
                and self._applied_bytes < self.timing.compact_bytes):
            return
        self._applied_bytes = 0
        started = self.reactor.seconds()
        data = self.applier.snapshot()
        snapshot = self.raft.compact(self.applied, data)
        if self.persister is None:
            self.snapshot_seconds.observe(self.reactor.seconds() - started)
            return
        d = self.persister.compact(snapshot)
        d.addCallback(lambda _: self.snapshot_seconds.observe(self.reactor.seconds() - started))
        d.addErrback(self._compact_failed)

    def _compact_failed(self, failure):
        if is_disk_full(failure.value):
            self.log.warn("{member}: no room for a snapshot; the log keeps growing",
                          member=self.member_id)
            return None
        return self._persist_failed(failure, None)

    # -- applied index -------------------------------------------------------------

    def when_applied(self, index):
        """Deferred that fires once entries up to ``index`` are applied."""
        if index <= self.applied:
            return defer.succeed(self.applied)
        d = defer.Deferred()
        self._applied_waiters.append((index, d))
        return d

    def _wake_applied(self):
        ready = [(i, d) for i, d in self._applied_waiters if i <= self.applied]
        if ready:
            self._applied_waiters = [(i, d) for i, d in self._applied_waiters
                                     if i > self.applied]
            for _, d in ready:
                if not d.called:
                    d.callback(self.applied)


__all__ = ["ClusterDriver", "Timing"]
