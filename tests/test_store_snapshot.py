"""Store snapshots: round trip, history restart, rejection of bad bytes."""

import pytest
from hypothesis import given, settings, strategies as st

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import ANY, DeleteFile, SetFile, Store

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


def test_restore_restarts_history_at_the_snapshot():
    source = Store()
    for i in range(5):
        source.apply(SetFile("/k", -1, b"%d" % i))
    copy = Store()
    copy.restore(source.snapshot())
    assert copy.get("/k") == (b"4", 5)
    with pytest.raises(DoozerError) as e:
        copy.get("/k", 4)
    assert e.value.code == ErrCode.TOO_LATE
    with pytest.raises(DoozerError):
        copy.first_event(ANY, 5)
    seen = []
    copy.add_watch(ANY, 6, seen.append)
    copy.apply(SetFile("/k", 5, b"next"))
    assert [(e.rev, e.value) for e in seen] == [(6, b"next")]


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


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_rejected_without_other_exceptions(data):
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
