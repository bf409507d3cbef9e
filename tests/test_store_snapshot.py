"""Store snapshots: round trip with the history window, DZS1, rejection of bad bytes."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import ANY, DEL, SET, DeleteFile, Event, Glob, SetFile, Store
from doozertw.store.snapshot import SnapshotImage, encode

PATHS = st.sampled_from(["/a", "/b/c", "/b/d", "/ctl/node/n1/addr", "/x/y/z"])
MUTATIONS = st.lists(st.tuples(st.booleans(), PATHS, st.binary(max_size=20)), max_size=30)


def _fill(store, mutations):
    for is_set, path, value in mutations:
        store.apply(SetFile(path, -1, value) if is_set else DeleteFile(path, -1))


@settings(max_examples=60, deadline=None)
@given(MUTATIONS)
def test_snapshot_round_trip_preserves_files_and_revision(mutations):
    source = Store()
    _fill(source, mutations)
    copy = Store()
    copy.restore(source.snapshot())
    assert copy.rev == source.rev
    assert copy.files(ANY) == source.files(ANY)
    assert copy.stat("/") == source.stat("/")
    assert copy.snapshot() == source.snapshot()


def test_restore_wakes_readers_waiting_for_the_revision():
    source = Store()
    source.apply(SetFile("/a", -1, b"1"))
    source.apply(SetFile("/a", -1, b"2"))
    copy = Store()
    woken = []
    copy.call_when_applied(2, lambda: woken.append(copy.get("/a")))
    copy.restore(source.snapshot())
    assert woken == [(b"2", 2)]


def test_restore_refuses_an_older_snapshot():
    old = Store()
    old.apply(SetFile("/a", -1, b"1"))
    newer = Store()
    _fill(newer, [(True, "/a", b"x"), (True, "/b/c", b"y")])
    with pytest.raises(DoozerError):
        newer.restore(old.snapshot())
    assert newer.rev == 2


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"", b"DZS1", b"DZS2"]), st.binary(max_size=200))
def test_garbage_is_rejected_without_other_exceptions(magic, data):
    data = magic + data
    store = Store()
    store.apply(SetFile("/keep", -1, b"me"))
    try:
        store.restore(data)
    except DoozerError as e:
        assert e.code == ErrCode.OTHER
        assert store.get("/keep") == (b"me", 1)


def test_truncated_snapshot_is_rejected():
    source = Store()
    _fill(source, [(True, "/a", b"value"), (True, "/b/c", b"other")])
    data = source.snapshot()
    for cut in range(len(data)):
        with pytest.raises(DoozerError):
            Store().restore(data[:cut])


def test_restore_past_a_live_watch_ends_it_with_too_late():
    source = Store()
    for i in range(3):
        source.apply(SetFile("/w", -1, b"%d" % i))
    replica = Store()
    seen, errors = [], []
    replica.add_watch(ANY, 1, seen.append, errors.append)
    quiet = []
    replica.add_watch(ANY, 1, quiet.append)
    replica.restore(source.snapshot())
    assert seen == [] and [e.code for e in errors] == [ErrCode.TOO_LATE]
    assert replica.watch_count == 0


def test_restore_at_the_same_revision_keeps_watches():
    source = Store()
    source.apply(SetFile("/w", -1, b"1"))
    replica = Store()
    replica.apply(SetFile("/w", -1, b"1"))
    errors = []
    replica.add_watch(ANY, 2, lambda e: None, errors.append)
    replica.restore(source.snapshot())
    assert errors == [] and replica.watch_count == 1


def test_node_wait_pending_across_a_restore_fails_with_too_late():
    from doozertw.node import Node

    source = Store()
    source.apply(SetFile("/w", -1, b"1"))
    source.apply(SetFile("/w", -1, b"2"))
    node = Node(store=Store())
    failures = []
    node.wait("/w", 1).addErrback(failures.append)
    node.store.restore(source.snapshot())
    assert [f.value.code for f in failures] == [ErrCode.TOO_LATE]


# -- the history window travels with the snapshot ----------------------------

READ_PATHS = ["/", "/a", "/b", "/b/c", "/b/d", "/ctl", "/x/y", "/x/y/z", "/nope"]


def _observe(store, rev):
    """Everything a client can read at ``rev`` (errors included)."""
    out = []
    for path in READ_PATHS:
        for read in (store.get, store.stat):
            try:
                out.append(read(path, rev))
            except DoozerError as e:
                out.append(e.code)
        try:
            out.append(store.getdir(path, rev, 0))
        except DoozerError as e:
            out.append(e.code)
    out.append(store.files(ANY, rev))
    return out


def _events_from(store, rev, pattern="/**"):
    seen = []
    try:
        store.add_watch(Glob(pattern), rev, seen.append).cancel()
    except DoozerError as e:
        return e.code
    return seen


def _history_store(history=4, history_bytes=10_000):
    store = Store(history=history, history_bytes=history_bytes)
    _fill(store, [(True, "/a", b"1"), (True, "/b/c", b"2"), (True, "/a", b"3"),
                  (False, "/b/c", b""), (True, "/b/d", b"4"), (True, "/a", b"5"),
                  (False, "/nope", b""), (True, "/x/y/z", b"6")])
    return store


@settings(max_examples=80, deadline=None)
@given(MUTATIONS, st.integers(1, 12), st.sampled_from([80, 200, 10_000]))
def test_restored_store_answers_every_past_revision_like_the_original(
        mutations, history, history_bytes):
    source = Store(history=history, history_bytes=history_bytes)
    _fill(source, mutations)
    copy = Store(history=history, history_bytes=history_bytes)
    copy.restore(source.snapshot())
    assert (copy.rev, copy.floor) == (source.rev, source.floor)
    for rev in range(source.floor, source.rev + 1):
        assert _observe(copy, rev) == _observe(source, rev)
    for rev in range(0, source.rev + 3):
        assert _events_from(copy, rev) == _events_from(source, rev)
        for pattern in ("/a", "/b/*"):
            try:
                expected = source.first_event(Glob(pattern), rev)
            except DoozerError as e:
                expected = e.code
            try:
                got = copy.first_event(Glob(pattern), rev)
            except DoozerError as e:
                got = e.code
            assert got == expected
    assert copy.snapshot() == source.snapshot()
    for store in (source, copy):
        store.apply(SetFile("/a", -1, b"after"))
        store.apply(DeleteFile("/x/y/z", -1))
    assert copy.snapshot() == source.snapshot()
    assert _observe(copy, copy.floor) == _observe(source, source.floor)


def test_past_reads_after_restore():
    source = _history_store()
    copy = Store(history=4)
    copy.restore(source.snapshot())
    assert (copy.rev, copy.floor) == (8, 4)
    assert copy.get("/a", 4) == (b"3", 3)
    assert copy.get("/b/c", 4) == (b"", 0)
    assert copy.get("/b/d", 5) == (b"4", 5)
    assert copy.get("/a", 6) == (b"5", 6)
    with pytest.raises(DoozerError) as e:
        copy.getdir("/x", 7)
    assert e.value.code == ErrCode.NOENT
    assert copy.getdir("/x", 8) == "y"
    assert [f.path for f in copy.files(ANY, 4)] == ["/a"]
    assert copy.walk(ANY, 5, 1) == Event(5, "/b/d", b"4", SET)
    assert [f.path for f in copy.files(ANY, 5)] == ["/a", "/b/d"]


def test_wait_from_a_past_revision_after_restore_returns_the_same_event():
    from doozertw.node import Node

    source = _history_store()
    copy = Store(history=4)
    copy.restore(source.snapshot())
    node = Node(store=copy)
    got = []
    node.wait("/a", 5).addCallback(got.append)
    node.wait("/nope", 5).addCallback(got.append)
    node.wait("/**", 5).addCallback(got.append)
    assert got == [Event(6, "/a", b"5", SET), Event(7, "/nope", b"", DEL),
                   Event(5, "/b/d", b"4", SET)]
    assert got == [source.first_event(Glob("/a"), 5), source.first_event(Glob("/nope"), 5),
                   source.first_event(ANY, 5)]
    replayed = []
    copy.add_watch(Glob("/a"), 1 + copy.floor, replayed.append)
    copy.apply(SetFile("/a", -1, b"live"))
    assert [(e.rev, e.value) for e in replayed] == [(6, b"5"), (9, b"live")]


def test_too_late_below_the_floor_after_restore():
    source = _history_store()
    copy = Store(history=4)
    copy.restore(source.snapshot())
    for call in (lambda: copy.get("/a", 3), lambda: copy.files(ANY, 0),
                 lambda: copy.first_event(ANY, 4), lambda: copy.add_watch(ANY, 4, print)):
        with pytest.raises(DoozerError) as e:
            call()
        assert e.value.code == ErrCode.TOO_LATE
    assert copy.first_event(ANY, 5).rev == 5


def test_revisions_continue_after_restore():
    source = _history_store()
    copy = Store(history=4)
    copy.restore(source.snapshot())
    seen = []
    copy.add_watch(ANY, 9, seen.append)
    out = copy.apply(SetFile("/a", 6, b"next"))
    assert out.rev == 9 and out.error is None
    assert seen == [Event(9, "/a", b"next", SET)]
    assert copy.apply(SetFile("/a", 6, b"stale")).error == ErrCode.REV_MISMATCH
    assert copy.get("/a", 8) == (b"5", 6) and copy.floor == 5


def test_restore_trims_to_this_stores_own_window():
    source = _history_store(history=100)
    assert source.floor == 0
    small = Store(history=3)
    small.restore(source.snapshot())
    assert (small.rev, small.floor) == (8, 5)
    assert small.get("/a", 5) == (b"3", 3)
    with pytest.raises(DoozerError):
        small.get("/a", 4)
    by_bytes = Store(history_bytes=2 * 70)
    by_bytes.restore(source.snapshot())
    assert (by_bytes.rev, by_bytes.floor) == (8, 6)
    assert by_bytes.first_event(ANY, 7) == source.first_event(ANY, 7)
    big = Store(history=1000)
    big.restore(_history_store(history=2).snapshot())
    assert (big.rev, big.floor) == (8, 6)
    for rev in range(6, 9):
        assert _observe(big, rev) == _observe(source, rev)


def test_empty_store_round_trips():
    copy = Store()
    copy.restore(Store().snapshot())
    assert (copy.rev, copy.floor, copy.file_count) == (0, 0, 0)
    assert copy.apply(SetFile("/a", 0, b"x")).rev == 1


# -- the previous format --------------------------------------------------------

def _dzs1(rev, files):
    parts = [struct.pack(">4sqI", b"DZS1", rev, len(files))]
    for path, value, file_rev in files:
        raw = path.encode("ascii")
        parts += [struct.pack(">HqI", len(raw), file_rev, len(value)), raw, value]
    return b"".join(parts)


def test_dzs1_still_restores_with_the_history_restarting_at_its_revision():
    copy = Store()
    copy.restore(_dzs1(5, [("/b/c", b"y", 2), ("/k", b"4", 5)]))
    assert (copy.rev, copy.floor) == (5, 5)
    assert copy.get("/k") == (b"4", 5) and copy.get("/b/c", 5) == (b"y", 2)
    with pytest.raises(DoozerError) as e:
        copy.get("/k", 4)
    assert e.value.code == ErrCode.TOO_LATE
    with pytest.raises(DoozerError):
        copy.first_event(ANY, 5)
    seen = []
    copy.add_watch(ANY, 6, seen.append)
    copy.apply(SetFile("/k", 5, b"next"))
    assert [(e.rev, e.value) for e in seen] == [(6, b"next")]
    assert copy.snapshot()[:4] == b"DZS2"
    again = Store()
    again.restore(copy.snapshot())
    assert again.get("/k", 5) == (b"4", 5) and again.floor == 5


def test_dzs1_truncations_and_bad_trees_are_rejected():
    data = _dzs1(3, [("/a", b"v", 1), ("/b", b"w", 3)])
    for cut in range(len(data)):
        with pytest.raises(DoozerError):
            Store().restore(data[:cut])
    for files in ([("/a", b"", 1), ("/a/b", b"", 2)], [("/b", b"", 1), ("/a", b"", 2)],
                  [("/a", b"", 1), ("/a", b"", 2)], [("/a", b"", 4)], [("/", b"", 1)]):
        with pytest.raises(DoozerError) as e:
            Store().restore(_dzs1(3, files))
        assert e.value.code == ErrCode.OTHER


# -- corrupt and truncated DZS2 -------------------------------------------------

def _must_reject(data):
    store = _history_store()
    before = store.snapshot()
    with pytest.raises(DoozerError) as e:
        store.restore(data)
    assert e.value.code == ErrCode.OTHER
    assert store.snapshot() == before


def _image(**changes):
    base = dict(rev=3, floor=1, files=(("/a", b"v", 1),),
                events=(Event(2, "/b", b"w", SET), Event(3, "/a", b"", DEL)))
    base.update(changes)
    return encode(SnapshotImage(**base))


def test_hand_built_image_restores():
    copy = Store()
    copy.restore(_image())
    assert copy.get("/a", 1) == (b"v", 1) and copy.get("/a") == (b"", 0)
    assert copy.get("/b", 2) == (b"w", 2) and copy.floor == 1


@pytest.mark.parametrize("data", [
    _image(events=(Event(2, "/a/x", b"w", SET), Event(3, "/a", b"", DEL))),  # NOTDIR
    _image(files=(("/a", b"v", 1), ("/a/b", b"", 1))),        # file inside a file
    _image(files=(("/b", b"v", 1), ("/a", b"", 1))),           # unsorted
    _image(files=(("/a", b"v", 2),)),                          # file newer than floor
    _image(files=(("/a", b"v", 0),)),                          # file at revision 0
    _image(rev=4),                                             # event count != rev - floor
    _image(floor=4, rev=3, files=(), events=()),               # floor above rev
    _image(rev=-1, floor=-1, files=(), events=()),             # negative revisions
    _image(events=(Event(3, "/b", b"w", SET), Event(2, "/a", b"", DEL))),  # out of order
    _image(events=(Event(2, "/b", b"w", SET), Event(3, "/a", b"x", DEL))),  # DEL with value
    _image(events=(Event(2, "/", b"w", SET), Event(3, "/a", b"", DEL))),  # root
    _image(events=(Event(2, "/b c", b"w", SET), Event(3, "/a", b"", DEL))),  # bad path
    _image() + b"\x00",                                        # trailing byte
    _image().replace(b"\x01" + b"\x00" * 7 + b"\x02", b"\x07" + b"\x00" * 7 + b"\x02"),  # kind
    struct.pack(">4sqqII", b"DZS2", 5, 5, 0xFFFFFFFF, 0),      # count beyond the data
    struct.pack(">4sqqII", b"DZS2", 2**40, 0, 0, 0),           # event count beyond the data
    b"DZS3" + _image()[4:],
])
def test_corrupt_snapshots_are_rejected_and_change_nothing(data):
    _must_reject(data)


def test_every_truncation_of_a_snapshot_with_history_is_rejected():
    data = _history_store().snapshot()
    for cut in range(len(data)):
        _must_reject(data[:cut])


@settings(max_examples=150, deadline=None)
@given(MUTATIONS, st.integers(1, 8), st.data())
def test_mangled_snapshots_fail_only_with_doozer_error(mutations, history, data):
    source = Store(history=history)
    _fill(source, mutations)
    good = source.snapshot()
    cut = data.draw(st.integers(0, len(good)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(len(good) - 1, 0)),
                                         st.integers(0, 255)), max_size=4))
    mangled = bytearray(good)
    for pos, byte in flips:
        mangled[pos] = byte
    for candidate in (good[:cut], bytes(mangled), bytes(mangled[:cut])):
        store = Store(history=history)
        try:
            store.restore(candidate)
        except DoozerError as e:
            assert e.code == ErrCode.OTHER
            assert store.rev == 0 and store.file_count == 0
        else:
            assert store.snapshot()[:4] == b"DZS2"


# -- what the operator is told, and the edges of the formats ---------------------

def _refusal(data):
    """The detail a fresh store gives for ``data`` (checks of the tree run there)."""
    store = Store()
    with pytest.raises(DoozerError) as e:
        store.restore(data)
    assert e.value.code == ErrCode.OTHER and store.rev == 0
    return e.value.detail


def test_refusals_say_what_is_wrong():
    assert _refusal(_dzs1(-1, [])) == "bad snapshot: negative revision"
    assert _refusal(_dzs1(3, [("/a", b"", 1), ("/a/b", b"", 2)])) == (
        "bad snapshot: /a/b clashes with a file")
    assert _refusal(_image(events=(Event(2, "/a/x", b"w", SET), Event(3, "/a", b"", DEL)))) == (
        "bad snapshot: event 2 does not apply")


_ONE_FILE = struct.pack(">HqI", 2, 1, 1) + b"/av"


@pytest.mark.parametrize("data, detail", [
    (b"DZS9" + _image()[4:], "not a snapshot"),
    (_image() + b"\x00", "trailing bytes"),
    (_image()[:-1], "truncated"),
    (struct.pack(">4sqqII", b"DZS2", 1, 1, 2, 0) + _ONE_FILE, "count larger than the data"),
    (_image(rev=4), "bad revision range"),
    (_image(files=(("/a", b"v", 0),)), "file /a has revision 0"),
    (_image(files=(("/a", b"v", 2),)), "file /a has revision 2"),
    (_image(files=(("/b", b"v", 1), ("/a", b"", 1))), "files out of order"),
    (_image(files=(("/a", b"v", 1), ("/a", b"", 1))), "files out of order"),
    (_image(files=(("/b c", b"v", 1),)), "bad path"),
    (_image(events=(Event(2, "/", b"w", SET), Event(3, "/a", b"", DEL))), "bad path"),
    (_image(events=(Event(3, "/b", b"w", SET), Event(2, "/a", b"", DEL))),
     "bad event at revision 2"),
    (_image().replace(b"\x01" + b"\x00" * 7 + b"\x02", b"\x07" + b"\x00" * 7 + b"\x02"),
     "bad event at revision 2"),
    (_image(events=(Event(2, "/b", b"w", SET), Event(3, "/a", b"x", DEL))),
     "delete with a value at revision 3"),
], ids=lambda value: "-".join(value.replace("/", "").split()) if isinstance(value, str) else "")
def test_corrupt_snapshot_details(data, detail):
    assert _refusal(data) == "bad snapshot: " + detail


def test_restore_details():
    newer = _history_store()
    with pytest.raises(DoozerError) as e:
        newer.restore(_image())
    assert e.value.detail == "snapshot at 3 is older than 8"
    errors = []
    replica = Store()
    replica.add_watch(ANY, 1, print, errors.append)
    replica.restore(_image())
    assert [e.detail for e in errors] == ["revisions up to 3 were skipped"]


def test_an_empty_dzs1_snapshot_restores():
    copy = Store()
    copy.restore(_dzs1(0, []))
    assert (copy.rev, copy.floor, copy.file_count) == (0, 0, 0)
