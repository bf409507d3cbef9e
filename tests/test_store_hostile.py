"""Hostile input to the pure store (issue 9, items 4 and 5).

Deep paths must cost memory linear in the bytes sent (keying every
directory by its full path made a d-level path cost O(d * len)); globs must
match in linear time whatever their wildcards; and a watcher that raises
must end alone, never reaching ``Store.apply`` (the Raft apply path).
"""

import re
import time
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st
from twisted.logger import globalLogPublisher

from doozertw.errors import DoozerError, ErrCode
from doozertw.limits import Limits
from doozertw.store import CLOBBER, DeleteFile, Glob, SetFile, Store, check_path
from doozertw.store import paths

# -- deep paths -------------------------------------------------------------


def _deep(i, depth):
    return ("/d%d" % i + "/a" * depth)[:paths.MAX_PATH_BYTES]


def _growth(store, depth, count, first=0):
    """(bytes allocated and kept, path bytes sent) for ``count`` deep SETs."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sent = 0
        for i in range(first, first + count):
            path = _deep(i, depth)
            sent += len(path)
            assert store.apply(SetFile(path, CLOBBER, b"v")).error is None
        return tracemalloc.get_traced_memory()[0] - before, sent
    finally:
        tracemalloc.stop()


def test_deep_sets_cost_memory_linear_in_the_bytes_sent():
    """The issue's probe: 2,000-level paths. Before the fix each cost about
    1,100 bytes per byte sent (452 MiB for 400 KB); a flat store costs ~50."""
    store = Store()
    grown, sent = _growth(store, 2000, 40)
    assert grown < 150 * sent, f"{grown / sent:.0f} bytes kept per byte sent"


def test_deep_and_shallow_paths_cost_the_same_per_byte():
    shallow, s_sent = _growth(Store(), 20, 400)
    deep, d_sent = _growth(Store(), 2000, 4)
    assert deep / d_sent < 3 * (shallow / s_sent)


def test_deleting_deep_paths_gives_the_memory_back():
    store = Store(history=1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            store.apply(SetFile(_deep(i, 2000), CLOBBER, b"v"))
        for i in range(20):
            store.apply(DeleteFile(_deep(i, 2000), CLOBBER))
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 64 * 1024
    assert store.stat("/") == (0, -2) and store._tree.root == {}


def test_deep_tree_structure_still_answers():
    store = Store()
    path = _deep(0, 2000)
    store.apply(SetFile(path, CLOBBER, b"v"))
    parent = path.rsplit("/", 1)[0]
    assert store.getdir(parent, None, 0) == "a"
    assert store.apply(SetFile(parent, CLOBBER, b"x")).error == ErrCode.ISDIR
    assert store.apply(SetFile(path + "/b", CLOBBER, b"x")).error == ErrCode.NOTDIR
    restored = Store()
    restored.restore(store.snapshot())
    assert restored.get(path) == (b"v", 1)


def test_depth_limit_is_enforced_where_paths_are_checked():
    ok = "/a" * paths.MAX_DEPTH
    assert check_path(ok) == ok
    with pytest.raises(DoozerError) as e:
        check_path(ok + "/a")
    assert e.value.code == ErrCode.BAD_PATH and "deeper" in e.value.detail
    assert check_path("/a/b/c", max_depth=3) == "/a/b/c"
    with pytest.raises(DoozerError):
        check_path("/a/b/c", max_depth=2)
    assert check_path("/", max_depth=0) == "/"
    assert Limits().max_depth == paths.MAX_DEPTH


def test_the_store_itself_keeps_replaying_deeper_paths():
    """Apply enforces only the byte limit, so an old log replays the same."""
    store = Store()
    deep = "/a" * (paths.MAX_DEPTH + 1)
    assert store.apply(SetFile(deep, CLOBBER, b"v")).error is None
    assert paths.is_valid_path(deep) and not paths.is_valid_path(deep, max_depth=256)
    assert paths.is_valid_path(deep[2:], max_depth=256)   # the limit itself is allowed
    assert store.get(deep) == (b"v", 1) and store.stat(deep) == (1, 1)
    assert store.stat(deep[:-2]) == (1, -2) and store.getdir(deep[:-2]) == "a"


# -- globs ------------------------------------------------------------------

_pattern = st.lists(st.sampled_from(["/", "a", "b", "*", "**", "?", "/a", "/*", "/**"]),
                    min_size=1, max_size=8).map(lambda p: "/" + "".join(p))
_text = st.text("ab/", max_size=12).map(lambda t: "/" + t)


@settings(max_examples=3000, deadline=None)
@given(_pattern, _text)
def test_glob_matching_agrees_with_the_regex_definition(pattern, path):
    tokens = paths._GLOB_TOKEN.findall(pattern)
    expected = re.compile(paths._translate(tokens) + r"\Z").match(path) is not None
    assert paths._Nfa(tokens).match(path) == expected
    try:
        glob = Glob(pattern)
    except DoozerError:
        return  # "//" and the like are not globs
    assert glob.match(path) == expected


@pytest.mark.parametrize("pattern", [
    "/" + "**a" * 6 + "**b", "/" + "*a" * 30 + "*b", "/**" + "?" * 50 + "**b"])
def test_pathological_globs_match_in_linear_time(pattern):
    """``re`` needed minutes for the first at 1,000 characters.

    These guards measure the CPU time of this thread (not wall time, so a
    loaded machine does not fail them): a linear match takes milliseconds,
    the quadratic or exponential ones they guard against take seconds."""
    glob = Glob(pattern)
    started = time.thread_time()
    assert not glob.match("/" + "a" * 4000)
    assert time.thread_time() - started < 0.5


def test_common_globs_keep_the_fast_regex():
    for pattern in ("/ctl/node/*/member", "/**", "/a/*", "/a/b?c/**"):
        assert paths._regex_is_safe(paths._GLOB_TOKEN.findall(pattern))
    assert not paths._regex_is_safe(paths._GLOB_TOKEN.findall("/**a**"))
    # a '*' followed by anything but '/' takes the NFA, wherever it stands
    for pattern in ("/*a", "/*/*a", "/x*y*"):
        assert not paths._regex_is_safe(paths._GLOB_TOKEN.findall(pattern))


def test_a_long_glob_matches_in_time_linear_in_the_path():
    """The NFA lets wildcards match nothing in one step per run of them, not
    one per pattern item (that made this take seconds)."""
    glob = Glob("/" + "*a" * 2000)
    started = time.thread_time()
    assert not glob.match("/" + "ab" * 2000)
    assert glob.match("/" + "ba" * 2000)
    assert time.thread_time() - started < 0.5


def test_two_stars_in_many_components_match_in_linear_time():
    """Backtracking ``re`` tries 3 ** 17 splits of this path before failing."""
    glob = Glob("/x*y*" * 17 + "/z")
    started = time.thread_time()
    assert not glob.match("/xyyy" * 17 + "/w")
    assert time.thread_time() - started < 0.5


# -- watch isolation ---------------------------------------------------------


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def reporting_store():
    store, reported = Store(), []
    store.report_failures_to(lambda what, watch, exc: reported.append((what, watch, exc)))
    return store, reported


def _boom(event):
    raise RuntimeError("consumer exploded")


@pytest.mark.parametrize("pattern", ["/k", "/**"])
def test_a_raising_watcher_ends_alone_and_apply_goes_on(pattern):
    store, reported = reporting_store()
    errors, seen = [], []
    bad = store.add_watch(Glob(pattern), 1, _boom, errors.append)
    store.add_watch(Glob(pattern), 1, seen.append)
    outcome = store.apply(SetFile("/k", CLOBBER, b"v"))
    assert outcome.rev == 1 and outcome.error is None
    assert [e.rev for e in seen] == [1]
    assert not bad.active and store.watch_count == 1 and store.watch_failures == 1
    assert len(errors) == 1 and errors[0].code == ErrCode.OTHER
    assert "RuntimeError" in errors[0].detail
    assert [(w, type(e)) for _, w, e in reported] == [(bad, RuntimeError)]
    store.apply(SetFile("/k", CLOBBER, b"w"))
    assert [e.rev for e in seen] == [1, 2] and len(errors) == 1


def test_a_raising_on_error_is_contained_too():
    store, reported = reporting_store()

    def bad_on_error(error):
        raise ValueError("on_error exploded")

    store.add_watch(Glob("/**"), 1, _boom, bad_on_error)
    assert store.apply(SetFile("/k", CLOBBER, b"v")).rev == 1
    assert store.watch_count == 0
    assert [type(e) for _, _, e in reported] == [RuntimeError, ValueError]


def test_a_watcher_raising_during_replay_is_ended_without_raising():
    store = Store()
    store.apply(SetFile("/k", CLOBBER, b"v"))
    errors = []
    watch = store.add_watch(Glob("/k"), 1, _boom, errors.append)
    assert not watch.active and len(errors) == 1 and store.watch_count == 0
    assert store.apply(SetFile("/k", CLOBBER, b"w")).rev == 2


def test_a_raising_revision_waiter_does_not_stop_the_others():
    store, reported = reporting_store()
    woken = []
    store.call_when_applied(1, lambda: 1 / 0)
    store.call_when_applied(1, lambda: woken.append(1))
    assert store.apply(SetFile("/k", CLOBBER, b"v")).rev == 1
    assert woken == [1] and store.rev_waiter_count == 0
    assert [type(e) for _, _, e in reported] == [ZeroDivisionError]


def test_a_raising_revision_waiter_is_reported_with_its_revision():
    store, reported = reporting_store()
    waiter = store.call_when_applied(2, lambda: 1 / 0)
    assert waiter.rev == 2
    store.apply(SetFile("/k", CLOBBER, b"v"))
    store.apply(SetFile("/k", CLOBBER, b"w"))
    assert [(what, w) for what, w, _ in reported] == [("revision waiter at 2 raised", None)]


def test_reports_say_what_failed_and_every_failure_counts():
    store, reported = reporting_store()
    errors = []

    def bad_on_error(error):
        errors.append(error)
        raise ValueError("on_error exploded")

    wild = store.add_watch(Glob("/**"), 1, _boom, bad_on_error)
    exact = store.add_watch(Glob("/k"), 1, _boom)
    store.apply(SetFile("/k", CLOBBER, b"v"))
    assert store.watch_failures == 2
    assert [(what, w, type(e)) for what, w, e in reported] == [
        ("raised on rev 1 /k", exact, RuntimeError),
        ("raised on rev 1 /k", wild, RuntimeError),
        ("on_error failed", wild, ValueError)]
    assert [e.detail for e in errors] == ["watch ended: its consumer failed (RuntimeError)"]


@pytest.mark.parametrize("pattern", ["/k", "/**"])
def test_a_watcher_raising_during_replay_is_counted_and_reported(pattern):
    store, reported = reporting_store()
    store.apply(SetFile("/k", CLOBBER, b"v"))
    store.add_watch(Glob(pattern), 2, lambda event: None)  # shares the index slot
    watch = store.add_watch(Glob(pattern), 1, _boom)
    assert not watch.active and store.watch_count == 1 and store.watch_failures == 1
    assert [(what, w) for what, w, _ in reported] == [("raised on rev 1 /k", watch)]


def test_a_node_logs_what_its_store_reports(logged):
    from doozertw.node import Node
    node = Node()
    node.store.add_watch(Glob("/**"), 1, _boom)
    node.store.apply(SetFile("/k", CLOBBER, b"v"))
    assert any("store.watch.failed" in e.get("log_format", "") for e in logged)
