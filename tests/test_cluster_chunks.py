"""Snapshot streaming in chunks: envelope, sender pacing, receiver rules."""

import itertools

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock

from doozertw.cluster import envelope as env
from doozertw.cluster.chunks import (
    ChunkAssembler, ChunkRejected, ChunkSender, LinkView, transport_link_view,
)
from doozertw.cluster.envelope import SnapshotChunk
from doozertw.consensus.codec import CodecError
from doozertw.consensus.messages import (
    ConfState, InstallSnapshot, Snapshot, SnapshotMeta,
)
from doozertw.peer.link import LinkState

KIB = 1024
MIB = 1024 * KIB


def ids():
    counter = itertools.count(1)
    return lambda: f"s{next(counter)}"


class Wire:
    """A send_envelope that encodes each chunk, as the driver would, and
    delivers it to an assembler (or just records it)."""

    def __init__(self, assembler=None, name="n1"):
        self.assembler = assembler
        self.name = name
        self.accept = True
        self.sent = []
        self.rejections = []

    def __call__(self, to, envelope):
        if not self.accept:
            return False
        chunk = env.decode_payload(env.encode_envelope(envelope))
        self.sent.append((to, chunk))
        if self.assembler is not None:
            try:
                self.assembler.receive(self.name, chunk)
            except ChunkRejected as exc:
                self.rejections.append(str(exc))
        return True


def turn(clock):
    """One reactor turn: run only the calls already due (Clock.advance(0)
    would also run the zero-delay calls they schedule)."""
    due = [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    for call in due:
        if call.active():
            clock.calls.remove(call)
            call.called = True
            call.func(*call.args, **call.kw)


def run(clock, seconds, step=0.01):
    for _ in range(int(round(seconds / step))):
        clock.advance(step)


def chunk(sid="a", seq=0, total=10, offset=0, data=b"x" * 5, last=False):
    return SnapshotChunk(sid, seq, total, offset, data, last)


# -- envelope -------------------------------------------------------------------------

CHUNKS = st.builds(SnapshotChunk, st.text(max_size=20),
                   st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                   st.integers(0, 2**64 - 1), st.binary(max_size=100), st.booleans())


@given(CHUNKS)
def test_snapshot_chunk_round_trips(c):
    data = env.encode_envelope(c)
    assert data[:2] == env.APP + bytes([env.ENVELOPE_TYPES.index(SnapshotChunk)])
    assert env.decode_payload(data) == c


@given(CHUNKS, st.data())
def test_truncated_or_extended_chunks_are_rejected(c, data):
    raw = env.encode_envelope(c)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(CodecError):
        env.decode_payload(raw[:cut])
    with pytest.raises(CodecError):
        env.decode_payload(raw + b"\x00")


def test_bad_flag_byte_is_rejected():
    raw = bytearray(env.encode_envelope(chunk(last=True)))
    assert raw[-1] == 1
    raw[-1] = 2
    with pytest.raises(CodecError):
        env.decode_payload(bytes(raw))


def test_existing_envelope_type_bytes_are_unchanged():
    assert [t.__name__ for t in env.ENVELOPE_TYPES[:6]] == [
        "Probe", "ProbeReply", "JoinRequest", "Forward", "ForwardAck", "ForwardReject"]
    assert env.encode_envelope(env.Probe("n1")) == b"A\x00\x00\x02n1"


def test_one_mib_chunk_fits_a_peer_frame():
    from doozertw.peer.limits import PeerLimits
    c = chunk(sid="0123456789ab", total=2**40, data=b"\x00" * MIB)
    assert len(env.encode_envelope(c)) - MIB < 64
    assert len(env.encode_envelope(c)) <= PeerLimits().max_payload


# -- round trips ----------------------------------------------------------------------


def test_five_mib_round_trip_in_64k_chunks():
    clock = Clock()
    got, done = [], []
    assembler = ChunkAssembler(clock, lambda peer, p: got.append((peer, p)))
    wire = Wire(assembler)
    sender = ChunkSender(wire, clock, chunk_size=64 * KIB, window=4, new_id=ids())
    payload = bytes(range(256)) * (5 * MIB // 256)
    sid = sender.start("n2", payload, done.append)
    assert done == [] and wire.sent == []  # nothing happens inside start()
    run(clock, 1)
    assert done == [True]
    assert got == [("n1", payload)]
    assert len(wire.sent) == 80
    assert [c.seq for _, c in wire.sent] == list(range(80))
    assert {c.snapshot_id for _, c in wire.sent} == {sid}
    assert wire.sent[-1][1].last and not any(c.last for _, c in wire.sent[:-1])
    assert not sender.sending("n2") and assembler.buffered_bytes == 0
    assert wire.rejections == []


def test_window_bounds_chunks_per_reactor_turn():
    clock = Clock()
    wire = Wire()
    sender = ChunkSender(wire, clock, chunk_size=10, window=3)
    sender.start("n2", b"y" * 100, lambda ok: None)
    turn(clock)
    assert len(wire.sent) == 3
    turn(clock)
    assert len(wire.sent) == 6


def test_install_snapshot_survives_the_trip():
    clock = Clock()
    snap = Snapshot(SnapshotMeta(40, 3, ConfState(frozenset({"n1", "n2"}))),
                    b"store" * 50_000)
    message = InstallSnapshot("n1~a", "n2~b", 3, snap)
    got = []
    assembler = ChunkAssembler(clock, lambda peer, p: got.append(env.decode_payload(p)))
    sender = ChunkSender(Wire(assembler), clock, chunk_size=4096)
    sender.start("n2", env.encode_raft(message), lambda ok: None)
    run(clock, 1)
    assert got == [message]


# -- receiver rules ---------------------------------------------------------------------


def started(clock=None, total=10, **kwargs):
    got = []
    a = ChunkAssembler(clock or Clock(), lambda peer, p: got.append((peer, p)), **kwargs)
    a.receive("n1", chunk(total=total))
    return a, got


@pytest.mark.parametrize("bad, reason", [
    (chunk(seq=2, offset=5), "expected"),                       # a chunk skipped
    (chunk(seq=1, offset=0), "offset"),                         # data repeated
    (chunk(seq=0), "duplicate"),                                # first chunk again
    (chunk(sid="b", seq=1, offset=5, last=True), "changed"),    # another snapshot
    (chunk(seq=1, total=11, offset=5), "total length"),         # inconsistent length
    (chunk(seq=1, offset=5, data=b"x" * 6), "fit"),             # past the end
    (chunk(seq=1, offset=5, data=b""), "fit"),                  # empty
    (chunk(seq=1, offset=5, last=False), "last"),               # end not flagged
    (chunk(seq=1, offset=5, data=b"x", last=True), "last"),     # early end flagged
])
def test_bad_chunks_abort_the_reassembly(bad, reason):
    a, got = started()
    with pytest.raises(ChunkRejected, match=reason):
        a.receive("n1", bad)
    assert a.in_progress("n1") is None and a.buffered_bytes == 0
    assert got == [] and a.rejected == 1
    with pytest.raises(ChunkRejected, match="without a transfer"):
        a.receive("n1", chunk(seq=1, offset=5, last=True))


def test_oversize_payload_is_rejected():
    a = ChunkAssembler(Clock(), lambda peer, p: None, max_total=1000)
    with pytest.raises(ChunkRejected, match="outside"):
        a.receive("n1", chunk(total=1001))
    with pytest.raises(ChunkRejected, match="outside"):
        a.receive("n1", chunk(total=0, data=b""))
    a.receive("n1", chunk(total=1000))
    assert a.in_progress("n1") == ("a", 5, 1000)


def test_first_chunk_of_a_new_snapshot_replaces_the_old():
    a, got = started()
    a.receive("n1", chunk(sid="b", total=3, data=b"abc", last=True))
    assert got == [("n1", b"abc")] and a.in_progress("n1") is None


def test_senders_are_independent_and_bounded():
    a, got = started(max_reassemblies=2)
    a.receive("n2", chunk())
    with pytest.raises(ChunkRejected, match="in progress"):
        a.receive("n3", chunk())
    a.receive("n2", chunk(seq=1, offset=5, last=True))
    a.receive("n1", chunk(seq=1, offset=5, data=b"y" * 5, last=True))
    assert got == [("n2", b"x" * 10), ("n1", b"x" * 5 + b"y" * 5)]


def test_stale_reassembly_expires():
    clock = Clock()
    a, got = started(clock, total=20, timeout=10)
    clock.advance(9)
    a.receive("n1", chunk(total=20, seq=1, offset=5))   # progress: timer restarts
    clock.advance(9)
    assert a.in_progress("n1") == ("a", 10, 20)
    clock.advance(1)
    assert a.in_progress("n1") is None and a.expired == 1
    assert not clock.getDelayedCalls()


def test_completed_and_stopped_reassemblies_leave_no_timer():
    clock = Clock()
    a, got = started(clock)
    a.receive("n1", chunk(seq=1, offset=5, last=True))
    assert not clock.getDelayedCalls()
    a.receive("n2", chunk())
    a.stop()
    assert not clock.getDelayedCalls() and a.buffered_bytes == 0


def test_on_payload_failure_is_contained():
    def boom(peer, payload):
        raise RuntimeError("boom")
    a = ChunkAssembler(Clock(), boom)
    a.receive("n1", chunk(total=5, last=True))
    assert a.completed == 1


# -- sender flow control and failure ------------------------------------------------------


def test_stalled_send_resumes():
    clock = Clock()
    got, done = [], []
    wire = Wire(ChunkAssembler(clock, lambda peer, p: got.append(p)))
    sender = ChunkSender(wire, clock, chunk_size=10, window=2, timeout=5,
                         retry_interval=0.1)
    sender.start("n2", b"z" * 95, done.append)
    turn(clock)
    assert len(wire.sent) == 2
    wire.accept = False
    run(clock, 4)                       # stalled, but within the timeout
    assert len(wire.sent) == 2 and done == [] and sender.progress("n2") == (20, 95)
    wire.accept = True
    run(clock, 1)
    assert done == [True] and got == [b"z" * 95] and wire.rejections == []


def test_queue_backlog_pauses_and_drain_resumes():
    clock = Clock()
    link = {"up": True, "queued": 0, "epoch": 1}
    wire = Wire()

    def send(to, envelope):
        link["queued"] += len(envelope.data)
        return wire(to, envelope)
    view = lambda name: LinkView(link["up"], link["queued"], link["epoch"])  # noqa: E731
    done = []
    sender = ChunkSender(send, clock, chunk_size=10, window=3, timeout=5,
                         retry_interval=0.1, link_view=view)
    sender.start("n2", b"q" * 100, done.append)
    run(clock, 1)
    assert len(wire.sent) == 3 and link["queued"] == 30    # window of 3 chunks ahead
    link["queued"] = 5                                     # the transport drained
    run(clock, 0.2)
    assert len(wire.sent) == 6
    link["queued"] = 0
    for _ in range(10):
        link["queued"] = 0
        run(clock, 0.2)
    assert done == [True] and len(wire.sent) == 10


def test_link_not_up_yet_waits_then_sends():
    clock = Clock()
    state = {"view": None}
    wire, done = Wire(), []
    sender = ChunkSender(wire, clock, chunk_size=10, timeout=5,
                         link_view=lambda n: state["view"])
    sender.start("n2", b"w" * 30, done.append)
    run(clock, 2)
    assert wire.sent == [] and done == []
    state["view"] = LinkView(True, 0, 7)
    run(clock, 0.1)
    assert done == [True]


@pytest.mark.parametrize("after", [LinkView(False, 0, 1), None, LinkView(True, 0, 2)])
def test_link_failure_mid_transfer_fails_it(after):
    clock = Clock()
    state = {"view": LinkView(True, 0, 1)}
    wire, done = Wire(), []
    sender = ChunkSender(wire, clock, chunk_size=10, window=1,
                         link_view=lambda n: state["view"])
    sender.start("n2", b"w" * 100, done.append)
    turn(clock)
    assert len(wire.sent) == 1
    state["view"] = after
    turn(clock)
    assert done == [False] and not sender.sending("n2") and len(wire.sent) == 1
    assert not clock.getDelayedCalls()


def test_timeout_gives_up():
    clock = Clock()
    wire, done = Wire(), []
    wire.accept = False
    sender = ChunkSender(wire, clock, chunk_size=10, timeout=3, retry_interval=0.1)
    sender.start("n2", b"t" * 30, done.append)
    run(clock, 2.9)
    assert done == []
    run(clock, 0.2)
    assert done == [False] and not sender.sending("n2")
    assert not clock.getDelayedCalls()


def test_link_down_report_fails_from_a_reactor_callback():
    clock = Clock()
    wire, done = Wire(), []
    wire.accept = False
    sender = ChunkSender(wire, clock, chunk_size=10)
    sender.start("n2", b"t" * 30, done.append)
    sender.link_down("n2")
    assert done == []
    turn(clock)
    assert done == [False]


def test_send_raising_fails_the_transfer():
    clock = Clock()
    done = []

    def send(to, envelope):
        raise OSError("boom")
    sender = ChunkSender(send, clock, chunk_size=10)
    sender.start("n2", b"t" * 30, done.append)
    turn(clock)
    assert done == [False]


def test_newer_snapshot_cancels_the_older_transfer():
    clock = Clock()
    got, done_old, done_new = [], [], []
    wire = Wire(ChunkAssembler(clock, lambda peer, p: got.append(p)))
    sender = ChunkSender(wire, clock, chunk_size=10, window=2, new_id=ids())
    first = sender.start("n2", b"o" * 100, done_old.append, key=("snap", 1))
    turn(clock)
    assert sender.sending("n2", ("snap", 1)) and not sender.sending("n2", ("snap", 2))
    second = sender.start("n2", b"n" * 35, done_new.append, key=("snap", 2))
    run(clock, 1)
    assert first != second
    assert done_old == [] and done_new == [True] and got == [b"n" * 35]
    assert {c.snapshot_id for _, c in wire.sent[2:]} == {second}
    assert wire.rejections == []


def test_transfers_to_different_peers_run_side_by_side():
    clock = Clock()
    wire, done = Wire(), []
    sender = ChunkSender(wire, clock, chunk_size=10, new_id=ids())
    sender.start("n2", b"a" * 30, lambda ok: done.append(("n2", ok)))
    sender.start("n3", b"b" * 30, lambda ok: done.append(("n3", ok)))
    run(clock, 0.1)
    assert sorted(done) == [("n2", True), ("n3", True)]


def test_cancel_and_stop_are_silent():
    clock = Clock()
    wire, done = Wire(), []
    sender = ChunkSender(wire, clock, chunk_size=10)
    sender.start("n2", b"a" * 30, done.append)
    sender.start("n3", b"a" * 30, done.append)
    assert sender.cancel("n2") and not sender.cancel("n2")
    sender.stop()
    run(clock, 60)
    assert done == [] and wire.sent == [] and not clock.getDelayedCalls()


def test_bad_arguments():
    with pytest.raises(ValueError):
        ChunkSender(Wire(), Clock(), chunk_size=0)
    with pytest.raises(ValueError):
        ChunkSender(Wire(), Clock()).start("n2", b"", lambda ok: None)
    with pytest.raises(ValueError):
        ChunkAssembler(Clock(), lambda p, d: None, max_total=0)


def test_transport_link_view():
    class Queue:
        bytes = 42

    class Link:
        state = LinkState.UP
        queue = Queue()
        connects = 3

    class Transport:
        links = {"n2": Link()}

    holder = {"t": None}
    view = transport_link_view(lambda: holder["t"])
    assert view("n2") is None
    holder["t"] = Transport()
    assert view("n2") == LinkView(True, 42, 3)
    assert view("n9") is None
    Link.state = LinkState.BACKING_OFF
    assert view("n2").up is False


# -- fuzz -------------------------------------------------------------------------------

MAX_TOTAL = 64
MAX_REASSEMBLIES = 2


def _valid_stream(sid, payload, size):
    out, offset = [], 0
    for seq in itertools.count():
        data = payload[offset:offset + size]
        end = offset + len(data)
        out.append(SnapshotChunk(sid, seq, len(payload), offset, data,
                                 end == len(payload)))
        offset = end
        if offset >= len(payload):
            return out


STREAM = st.builds(_valid_stream, st.sampled_from(["a", "b", "c"]),
                   st.binary(min_size=1, max_size=MAX_TOTAL + 16), st.integers(1, 20))
RANDOM_CHUNK = st.builds(SnapshotChunk, st.sampled_from(["a", "b", "c"]),
                         st.integers(0, 6), st.integers(0, MAX_TOTAL + 16),
                         st.integers(0, 80), st.binary(max_size=24), st.booleans())
DAMAGE = st.tuples(st.sampled_from(["none", "lose", "repeat", "cut"]), st.integers(0, 10))
STEP = st.one_of(
    st.tuples(st.just("stream"), st.sampled_from(["n1", "n2", "n3"]),
              st.tuples(STREAM, DAMAGE)),
    st.tuples(st.just("chunk"), st.sampled_from(["n1", "n2", "n3"]), RANDOM_CHUNK),
    st.tuples(st.just("time"), st.just(""), st.one_of(st.floats(0, 4), st.just(6.0))),
)


def _damaged(stream, damage):
    kind, i = damage
    i %= len(stream)
    return {"none": stream, "lose": stream[:i] + stream[i + 1:],
            "repeat": stream[:i + 1] + stream[i:], "cut": stream[:i]}[kind]


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=30))
def test_fuzz_never_raises_undocumented_errors_nor_exceeds_bounds(steps):
    clock = Clock()
    got = []
    a = ChunkAssembler(clock, lambda peer, p: got.append(p), max_total=MAX_TOTAL,
                       timeout=5, max_reassemblies=MAX_REASSEMBLIES)
    for kind, peer, arg in steps:
        if kind == "time":
            clock.advance(arg)
            continue
        chunks = _damaged(*arg) if kind == "stream" else [arg]
        for c in chunks:
            try:
                a.receive(peer, c)
            except ChunkRejected:
                assert a.in_progress(peer) is None
            assert a.buffered_bytes <= MAX_TOTAL * MAX_REASSEMBLIES
            for name in ("n1", "n2", "n3"):
                state = a.in_progress(name)
                assert state is None or state[1] < state[2] <= MAX_TOTAL
    assert all(0 < len(p) <= MAX_TOTAL for p in got)
    assert len(clock.getDelayedCalls()) == sum(
        a.in_progress(n) is not None for n in ("n1", "n2", "n3"))


def test_transport_link_view_reads_a_real_peer_transport():
    from twisted.internet.testing import MemoryReactorClock

    from doozertw.peer import PeerTransport
    transport = PeerTransport("n1", "c", {"n2": "tcp:host=127.0.0.1:port=7046"},
                              on_message=lambda name, payload: None,
                              reactor=MemoryReactorClock())
    view = transport_link_view(lambda: transport)
    assert view("n2") == LinkView(False, 0, 0)     # still connecting
    assert transport.send("n2", b"p" * 100)
    assert view("n2") == LinkView(False, 100, 0)   # queued until the link is up
    assert view("n3") is None
    transport.stop()
