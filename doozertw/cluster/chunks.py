"""Streaming a Raft snapshot to a peer in chunks.

An InstallSnapshot is encoded once (``envelope.encode_raft``); the payload
bytes are cut into ``SnapshotChunk`` envelopes of ``chunk_size`` bytes that
travel as ordinary peer payloads, so no single frame has to hold the whole
snapshot (the peer frame limit is 64 MiB, doozertw.peer.limits).

Sender (``ChunkSender``), one transfer per peer:

- ``start(name, payload, on_done, key=None)`` begins a transfer with a fresh
  ``snapshot_id``; a transfer already running to ``name`` is cancelled (its
  ``on_done`` is never called). ``sending(name, key)`` tells whether a
  transfer of that ``key`` is running, so a caller can avoid restarting the
  same snapshot.
- Chunks are produced lazily and paced by the reactor: each turn sends up
  to ``window`` chunks. With a ``link_view`` (see ``LinkView`` and
  ``transport_link_view``), no chunk is sent while the peer's send queue
  holds ``window * chunk_size`` bytes or more, nor while its link is not up;
  the transfer resumes by polling every ``retry_interval`` seconds. A
  ``send_envelope`` returning False means "not taken": the same chunk is
  retried later.
- ``on_done(ok)`` is called at most once, always from a reactor callback
  (never from inside ``start``): True once the last chunk has been handed
  to ``send_envelope``; False if the link went down or reconnected after a
  chunk was sent (a chunk may be lost), if nothing could be sent for
  ``timeout`` seconds, if ``send_envelope`` raised, or on ``link_down``.
  Never for a transfer ended by ``cancel``, ``stop`` or a newer ``start``.

Receiver (``ChunkAssembler``), one reassembly per sending peer:

- Chunks must come in order: seq 0 at offset 0 starts a reassembly (and
  replaces any reassembly of another snapshot_id from the same peer), then
  each chunk must carry the next seq, the byte offset received so far, the
  same snapshot_id and total_len, non-empty data ending within total_len,
  and ``last`` exactly when it ends the payload. Anything else raises
  ``ChunkRejected`` and discards that peer's reassembly.
- ``total_len`` above ``max_total`` (default 1 GiB) is rejected, and at
  most ``max_reassemblies`` run at once, so at most ``max_total *
  max_reassemblies`` bytes are ever held. A reassembly with no progress for
  ``timeout`` seconds (injected clock) is discarded.
- A complete payload goes to ``on_payload(from_name, payload)``; an
  exception it raises is logged, not propagated.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Hashable

import attrs
from twisted.logger import Logger

from doozertw.cluster.envelope import SnapshotChunk

if TYPE_CHECKING:
    from doozertw.peer.transport import PeerTransport

MIB = 1024 * 1024
GIB = 1024 * MIB

log = Logger(namespace="doozertw.cluster.chunks")


class ChunkRejected(ValueError):
    """A chunk broke the streaming rules; the peer's reassembly is gone."""


@attrs.frozen
class LinkView:
    """What the sender may know of its link to one peer: is it ``up``, how
    many bytes wait in its send queue, and an ``epoch`` that changes every
    time a new connection replaces the old one."""

    up: bool
    queued_bytes: int
    epoch: int


def transport_link_view(
        get_transport: Callable[[], PeerTransport | None]) -> Callable[[str], LinkView | None]:
    """A ``link_view`` for ChunkSender backed by a PeerTransport.

    ``get_transport()`` returns the transport or None (it may be built
    later than the sender). The view is None for an unknown peer.
    """
    from doozertw.peer.link import LinkState

    def view(name: str) -> LinkView | None:
        transport = get_transport()
        link = transport.links.get(name) if transport is not None else None
        if link is None:
            return None
        return LinkView(up=link.state is LinkState.UP, queued_bytes=link.queue.bytes,
                        epoch=link.connects)
    return view


def _random_id() -> str:
    return os.urandom(6).hex()


# -- sender -----------------------------------------------------------------------


class _Transfer:
    """The sender's state of one transfer (mutable, private)."""

    __slots__ = ("name", "payload", "on_done", "key", "snapshot_id", "seq", "offset",
                 "epoch", "call", "watchdog")

    def __init__(self, name, payload, on_done, key, snapshot_id):
        self.name = name
        self.payload = payload
        self.on_done = on_done
        self.key = key
        self.snapshot_id = snapshot_id
        self.seq = 0
        self.offset = 0
        self.epoch = None
        self.call = None
        self.watchdog = None

    def next_chunk(self, chunk_size: int) -> SnapshotChunk:
        total = len(self.payload)
        end = min(self.offset + chunk_size, total)
        return SnapshotChunk(self.snapshot_id, self.seq, total, self.offset,
                             bytes(self.payload[self.offset:end]), end == total)

    def sent(self, chunk: SnapshotChunk) -> None:
        self.seq += 1
        self.offset += len(chunk.data)

    @property
    def done(self) -> bool:
        return self.offset >= len(self.payload)

    def cancel_timers(self) -> None:
        for call in (self.call, self.watchdog):
            if call is not None and call.active():
                call.cancel()
        self.call = self.watchdog = None


class ChunkSender:
    """Streams payloads to peers as SnapshotChunk envelopes (module docstring).

    - ``send_envelope(name, envelope) -> bool``: hands one envelope to the
      transport; False means it was not taken.
    - ``clock``: IReactorTime (``callLater``, ``seconds``).
    - ``chunk_size`` bytes of payload per chunk (default 1 MiB); ``window``
      chunks at most per reactor turn and, with ``link_view``, at most
      ``window * chunk_size`` bytes waiting in the peer's send queue.
    - ``timeout``: seconds without a chunk taken before giving up.
    - ``link_view(name) -> LinkView | None``: optional back-pressure and
      link-liveness probe; ``new_id()``: snapshot ids (default random).
    """

    def __init__(self, send_envelope: Callable[[str, SnapshotChunk], bool], clock, *,
                 chunk_size: int = MIB, window: int = 4, timeout: float = 30.0,
                 retry_interval: float = 0.05,
                 link_view: Callable[[str], LinkView | None] | None = None,
                 new_id: Callable[[], str] = _random_id):
        if chunk_size < 1 or window < 1:
            raise ValueError("chunk_size and window must be positive")
        if timeout <= 0 or retry_interval <= 0:
            raise ValueError("timeout and retry_interval must be positive")
        self.send_envelope = send_envelope
        self.clock = clock
        self.chunk_size = chunk_size
        self.window = window
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.link_view = link_view
        self.new_id = new_id
        self._transfers: dict[str, _Transfer] = {}

    # -- public API ------------------------------------------------------------------

    def start(self, name: str, payload: bytes, on_done: Callable[[bool], None],
              key: Hashable = None) -> str:
        """Begin streaming ``payload`` (non-empty) to ``name``; returns the
        transfer's snapshot_id. Cancels any transfer already running to
        ``name`` without reporting it."""
        if not payload:
            raise ValueError("empty payload")
        self.cancel(name)
        t = _Transfer(name, payload, on_done, key, self.new_id())
        self._transfers[name] = t
        t.watchdog = self.clock.callLater(self.timeout, self._timed_out, t)
        self._schedule(t, 0)
        log.info("streaming {size} bytes to {peer} as snapshot {id} "
                 "in chunks of {chunk}", size=len(payload), peer=name,
                 id=t.snapshot_id, chunk=self.chunk_size)
        return t.snapshot_id

    def sending(self, name: str, key: Hashable = None) -> bool:
        """Is a transfer running to ``name`` (with this ``key``, if given)?"""
        t = self._transfers.get(name)
        return t is not None and (key is None or t.key == key)

    def progress(self, name: str) -> tuple[int, int] | None:
        """(bytes handed over, total bytes) of the transfer to ``name``."""
        t = self._transfers.get(name)
        return None if t is None else (t.offset, len(t.payload))

    def cancel(self, name: str) -> bool:
        """End the transfer to ``name`` without calling its ``on_done``."""
        t = self._transfers.pop(name, None)
        if t is None:
            return False
        t.cancel_timers()
        log.info("snapshot {id} to {peer} cancelled at {offset}/{size} bytes",
                 id=t.snapshot_id, peer=name, offset=t.offset, size=len(t.payload))
        return True

    def link_down(self, name: str) -> None:
        """The caller knows the link to ``name`` failed: fail its transfer."""
        t = self._transfers.get(name)
        if t is not None:
            self._schedule_finish(t, False, "link reported down")

    def stop(self) -> None:
        """Cancel every transfer (none is reported)."""
        for name in list(self._transfers):
            self.cancel(name)

    # -- pacing ----------------------------------------------------------------------

    def _schedule(self, t: _Transfer, delay: float) -> None:
        if t.call is None or not t.call.active():
            t.call = self.clock.callLater(delay, self._pump, t)

    def _current(self, t: _Transfer) -> bool:
        return self._transfers.get(t.name) is t

    def _pump(self, t: _Transfer) -> None:
        t.call = None
        if not self._current(t):
            return
        for _ in range(self.window):
            view = self._view(t)
            if view is False:
                return  # finished: the link failed
            if view is None:
                break   # not now: the link is not up or the queue is full
            chunk = t.next_chunk(self.chunk_size)
            try:
                taken = self.send_envelope(t.name, chunk)
            except Exception:
                log.failure("sending snapshot chunk to {peer} failed", peer=t.name)
                self._finish(t, False, "send raised")
                return
            if not taken:
                break
            self._taken(t, chunk, view)
            if t.done:
                self._finish(t, True, "all chunks sent")
                return
        else:
            self._schedule(t, 0)  # window used up: go on next reactor turn
            return
        self._schedule(t, self.retry_interval)

    def _view(self, t: _Transfer):
        """True (go), None (wait) or False (the transfer has failed)."""
        if self.link_view is None:
            return True
        view = self.link_view(t.name)
        started = t.epoch is not None
        if view is None or not view.up:
            if started:
                self._finish(t, False, "link went down")
                return False
            return None
        if started and view.epoch != t.epoch:
            self._finish(t, False, "link reconnected: a chunk may be lost")
            return False
        if view.queued_bytes >= self.window * self.chunk_size:
            return None
        return view

    def _taken(self, t: _Transfer, chunk: SnapshotChunk, view) -> None:
        t.sent(chunk)
        if isinstance(view, LinkView) and t.epoch is None:
            t.epoch = view.epoch
        if t.watchdog is not None and t.watchdog.active():
            t.watchdog.reset(self.timeout)

    def _timed_out(self, t: _Transfer) -> None:
        t.watchdog = None
        if self._current(t):
            self._finish(t, False, f"no chunk taken for {self.timeout}s")

    def _schedule_finish(self, t: _Transfer, ok: bool, reason: str) -> None:
        """Finish from a reactor callback (callers may be mid-handling)."""
        t.cancel_timers()
        t.call = self.clock.callLater(0, self._finish, t, ok, reason)

    def _finish(self, t: _Transfer, ok: bool, reason: str) -> None:
        if not self._current(t):
            return
        del self._transfers[t.name]
        t.cancel_timers()
        emit = log.info if ok else log.warn
        emit("snapshot {id} to {peer}: {outcome} ({reason}) after {offset}/{size} bytes",
             id=t.snapshot_id, peer=t.name, outcome="sent" if ok else "failed",
             reason=reason, offset=t.offset, size=len(t.payload))
        try:
            t.on_done(ok)
        except Exception:
            log.failure("on_done of the snapshot transfer to {peer} failed", peer=t.name)


# -- receiver -------------------------------------------------------------------------


class _Reassembly:
    __slots__ = ("snapshot_id", "total_len", "seq", "buffer", "expiry")

    def __init__(self, snapshot_id, total_len):
        self.snapshot_id = snapshot_id
        self.total_len = total_len
        self.seq = 0
        self.buffer = bytearray()
        self.expiry = None


class ChunkAssembler:
    """Rebuilds streamed payloads, one per sending peer (module docstring).

    - ``clock``: IReactorTime for the staleness ``timeout`` (seconds);
    - ``on_payload(from_name, payload: bytes)``: a complete payload;
    - ``max_total``: largest accepted payload; ``max_reassemblies``: most
      peers streaming at once.
    """

    def __init__(self, clock, on_payload: Callable[[str, bytes], None], *,
                 max_total: int = GIB, timeout: float = 60.0, max_reassemblies: int = 4):
        if max_total < 1 or max_reassemblies < 1 or timeout <= 0:
            raise ValueError("bounds and timeout must be positive")
        self.clock = clock
        self.on_payload = on_payload
        self.max_total = max_total
        self.timeout = timeout
        self.max_reassemblies = max_reassemblies
        self.completed = 0
        self.rejected = 0
        self.expired = 0
        self._active: dict[str, _Reassembly] = {}

    @property
    def buffered_bytes(self) -> int:
        """Bytes held by every reassembly in progress."""
        return sum(len(r.buffer) for r in self._active.values())

    def in_progress(self, from_name: str) -> tuple[str, int, int] | None:
        """(snapshot_id, bytes received, total_len) of ``from_name``'s reassembly."""
        r = self._active.get(from_name)
        return None if r is None else (r.snapshot_id, len(r.buffer), r.total_len)

    def receive(self, from_name: str, chunk: SnapshotChunk) -> None:
        """Take one chunk; raises ChunkRejected (and discards ``from_name``'s
        reassembly) if it breaks the rules. Calls ``on_payload`` when the
        payload is complete."""
        try:
            r = self._reassembly_for(from_name, chunk)
            self._check(r, chunk)
        except ChunkRejected:
            self.rejected += 1
            self.discard(from_name)
            raise
        r.buffer += chunk.data
        r.seq += 1
        if chunk.last:
            self._complete(from_name, r)
        else:
            r.expiry.reset(self.timeout)

    def discard(self, from_name: str) -> bool:
        """Drop ``from_name``'s reassembly, if any."""
        r = self._active.pop(from_name, None)
        if r is None:
            return False
        if r.expiry is not None and r.expiry.active():
            r.expiry.cancel()
        return True

    def stop(self) -> None:
        """Drop every reassembly and its timer."""
        for name in list(self._active):
            self.discard(name)

    # -- internals -------------------------------------------------------------------

    def _reassembly_for(self, from_name: str, chunk: SnapshotChunk) -> _Reassembly:
        r = self._active.get(from_name)
        if chunk.seq != 0:
            if r is None:
                raise ChunkRejected(f"chunk {chunk.seq} of {chunk.snapshot_id!r} "
                                    "without a transfer in progress")
            if chunk.snapshot_id != r.snapshot_id:
                raise ChunkRejected(f"snapshot id changed from {r.snapshot_id!r} "
                                    f"to {chunk.snapshot_id!r} mid-transfer")
            return r
        if r is not None and r.snapshot_id == chunk.snapshot_id:
            raise ChunkRejected(f"duplicate first chunk of {chunk.snapshot_id!r}")
        if not 0 < chunk.total_len <= self.max_total:
            raise ChunkRejected(f"payload of {chunk.total_len} bytes outside "
                                f"1..{self.max_total}")
        if r is not None:
            log.info("peer {peer} replaced snapshot {old} by {new}", peer=from_name,
                     old=r.snapshot_id, new=chunk.snapshot_id)
            self.discard(from_name)
        elif len(self._active) >= self.max_reassemblies:
            raise ChunkRejected(f"already {len(self._active)} transfers in progress")
        r = _Reassembly(chunk.snapshot_id, chunk.total_len)
        r.expiry = self.clock.callLater(self.timeout, self._expire, from_name, r)
        self._active[from_name] = r
        return r

    @staticmethod
    def _check(r: _Reassembly, chunk: SnapshotChunk) -> None:
        received = len(r.buffer)
        if chunk.seq != r.seq:
            raise ChunkRejected(f"chunk {chunk.seq} where {r.seq} was expected")
        if chunk.total_len != r.total_len:
            raise ChunkRejected(f"total length changed from {r.total_len} "
                                f"to {chunk.total_len}")
        if chunk.offset != received:
            raise ChunkRejected(f"offset {chunk.offset} where {received} was expected")
        end = received + len(chunk.data)
        if not chunk.data or end > r.total_len:
            raise ChunkRejected(f"chunk of {len(chunk.data)} bytes at {received} "
                                f"does not fit in {r.total_len}")
        if chunk.last != (end == r.total_len):
            raise ChunkRejected("last flag does not match the payload length")

    def _complete(self, from_name: str, r: _Reassembly) -> None:
        self.discard(from_name)
        payload = bytes(r.buffer)
        r.buffer = bytearray()
        self.completed += 1
        log.info("snapshot {id} from {peer} complete: {size} bytes", id=r.snapshot_id,
                 peer=from_name, size=len(payload))
        try:
            self.on_payload(from_name, payload)
        except Exception:
            log.failure("on_payload for snapshot {id} from {peer} failed",
                        id=r.snapshot_id, peer=from_name)

    def _expire(self, from_name: str, r: _Reassembly) -> None:
        r.expiry = None
        if self._active.get(from_name) is r:
            del self._active[from_name]
            self.expired += 1
            log.warn("snapshot {id} from {peer} expired after {seconds}s without "
                     "progress at {received}/{total} bytes", id=r.snapshot_id,
                     peer=from_name, seconds=self.timeout, received=len(r.buffer),
                     total=r.total_len)


__all__ = [
    "ChunkAssembler", "ChunkRejected", "ChunkSender", "GIB", "LinkView", "MIB",
    "transport_link_view",
]
