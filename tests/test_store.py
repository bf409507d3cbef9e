"""Unit tests of the pure Store: operations, errors, history, watches, mutations."""

import pytest
from hypothesis import given, strategies as st

from doozertw.errors import DoozerError, ErrCode
from doozertw.store.mutation import GrantLease, RevokeLease, Txn
from doozertw.store import (
    ANY, CLOBBER, DEL, DIR, MISSING, SET, DeleteFile, Event, Glob, Nop, Outcome,
    SetFile, Store, decode, encode)


def code_of(fn, *args, **kw):
    with pytest.raises(DoozerError) as e:
        fn(*args, **kw)
    return e.value.code


def put(store, path, value=b"v", rev=CLOBBER):
    out = store.apply(SetFile(path, rev, value))
    assert out.error is None, out
    return out.rev


def rm(store, path, rev=CLOBBER):
    out = store.apply(DeleteFile(path, rev))
    assert out.error is None, out
    return out.rev


def test_special_revisions_match_doozer():
    assert (MISSING, CLOBBER, DIR) == (0, -1, -2)


def test_empty_store():
    s = Store()
    assert s.rev == 0 and s.floor == 0 and s.file_count == 0 and s.watch_count == 0
    assert s.get("/a") == (b"", 0)
    assert s.stat("/") == (0, DIR)
    assert s.stat("/a") == (0, 0)
    assert code_of(s.getdir, "/") == ErrCode.RANGE
    assert code_of(s.getdir, "/a") == ErrCode.NOENT
    assert code_of(s.walk, ANY) == ErrCode.RANGE
    assert code_of(s.get, "/") == ErrCode.ISDIR


def test_history_must_be_positive():
    with pytest.raises(ValueError, match=r"^history must keep at least one revision$"):
        Store(history=0)


# -- set ---------------------------------------------------------------------

def test_set_creates_file_and_takes_next_revision():
    s = Store()
    out = s.apply(SetFile("/a", CLOBBER, b"hello"))
    assert out == Outcome(rev=1, event=Event(1, "/a", b"hello", SET))
    assert s.rev == 1 and s.file_count == 1
    assert s.get("/a") == (b"hello", 1)
    assert s.stat("/a") == (5, 1)


def test_set_rev_rules():
    s = Store()
    assert s.apply(SetFile("/a", 0, b"1")).rev == 1          # create-only, missing
    assert s.apply(SetFile("/a", 0, b"2")).error == ErrCode.REV_MISMATCH
    assert s.rev == 1
    assert s.apply(SetFile("/a", 1, b"3")).rev == 2          # exact rev
    assert s.apply(SetFile("/a", 1, b"4")).error == ErrCode.REV_MISMATCH  # stale
    assert s.apply(SetFile("/a", 99, b"5")).rev == 3         # future rev is >= current
    assert s.apply(SetFile("/a", CLOBBER, b"6")).rev == 4
    assert s.apply(SetFile("/a", -2, b"7")).error == ErrCode.REV_MISMATCH
    assert s.apply(SetFile("/new", -5, b"")).error == ErrCode.REV_MISMATCH
    assert s.get("/a") == (b"6", 4)


def test_failed_write_changes_nothing():
    s = Store()
    put(s, "/a", b"x")
    seen = []
    s.add_watch(ANY, 1, seen.append)
    out = s.apply(SetFile("/a", 0, b"y"))
    assert out.error == ErrCode.REV_MISMATCH and out.rev == 1 and out.event is None
    assert s.rev == 1 and s.get("/a") == (b"x", 1)
    assert [e.rev for e in seen] == [1]


def test_set_on_directory_is_isdir():
    s = Store()
    put(s, "/a/b")
    assert s.apply(SetFile("/a", CLOBBER, b"x")).error == ErrCode.ISDIR
    assert s.apply(SetFile("/", CLOBBER, b"x")).error == ErrCode.ISDIR
    assert s.rev == 1


def test_set_below_a_file_is_notdir():
    s = Store()
    put(s, "/a")
    assert s.apply(SetFile("/a/b", CLOBBER, b"x")).error == ErrCode.NOTDIR
    assert s.apply(SetFile("/a/b/c", 0, b"x")).error == ErrCode.NOTDIR
    assert s.rev == 1 and s.file_count == 1


def test_set_bad_path():
    s = Store()
    for bad in ["a", "/a/", "/a b", "", "/a*"]:
        assert s.apply(SetFile(bad, CLOBBER, b"x")).error == ErrCode.BAD_PATH
        assert s.apply(DeleteFile(bad, CLOBBER)).error == ErrCode.BAD_PATH
    assert s.rev == 0


def test_apply_rejects_non_mutations():
    with pytest.raises(TypeError, match=r"^not a mutation: 'set /a'$"):
        Store().apply("set /a")


def test_nop_changes_nothing():
    s = Store()
    put(s, "/a")
    assert s.apply(Nop()) == Outcome(rev=1)
    assert s.rev == 1


# -- delete ------------------------------------------------------------------

def test_delete_rules():
    s = Store()
    put(s, "/a")                                            # rev 1
    assert s.apply(DeleteFile("/a", 0)).error == ErrCode.REV_MISMATCH
    out = s.apply(DeleteFile("/a", 1))
    assert out == Outcome(rev=2, event=Event(2, "/a", b"", DEL))
    assert s.get("/a") == (b"", 0) and s.file_count == 0


def test_delete_missing_file_succeeds_and_takes_a_revision():
    s = Store()
    assert s.apply(DeleteFile("/nope", 0)).rev == 1
    assert s.apply(DeleteFile("/nope", CLOBBER)).rev == 2
    assert s.rev == 2 and s.file_count == 0
    assert s.stat("/") == (0, DIR)


def test_delete_directory_is_isdir():
    s = Store()
    put(s, "/a/b")
    assert s.apply(DeleteFile("/a", CLOBBER)).error == ErrCode.ISDIR
    assert s.apply(DeleteFile("/", CLOBBER)).error == ErrCode.ISDIR
    assert s.get("/a/b") == (b"v", 1)


# -- directories -------------------------------------------------------------

def test_directories_appear_and_disappear_implicitly():
    s = Store()
    put(s, "/a/b/c", b"1")
    put(s, "/a/d", b"22")
    assert s.stat("/a") == (2, DIR)
    assert s.stat("/a/b") == (1, DIR)
    assert s.stat("/") == (1, DIR)
    assert [s.getdir("/a", offset=i) for i in range(2)] == ["b", "d"]
    assert code_of(s.getdir, "/a", offset=2) == ErrCode.RANGE
    assert code_of(s.getdir, "/a", offset=-1) == ErrCode.RANGE
    assert code_of(s.get, "/a") == ErrCode.ISDIR
    assert code_of(s.getdir, "/a/d") == ErrCode.NOTDIR
    rm(s, "/a/b/c")
    assert s.stat("/a/b") == (0, 0)
    assert code_of(s.getdir, "/a/b") == ErrCode.NOENT
    assert s.stat("/a") == (1, DIR)
    rm(s, "/a/d")
    assert s.stat("/a") == (0, 0)
    assert s.stat("/") == (0, DIR)
    # the former directory can now be a file, and its former file a directory
    put(s, "/a", b"file")
    assert s.get("/a") == (b"file", 5)
    rm(s, "/a")
    put(s, "/a/d/e")
    assert s.getdir("/a/d") == "e"


def test_getdir_names_sorted():
    s = Store()
    for name in ["z", "a", "m", "B", "a-b", "a.b"]:
        put(s, "/d/" + name)
    names = [s.getdir("/d", offset=i) for i in range(6)]
    assert names == sorted(["z", "a", "m", "B", "a-b", "a.b"])


def test_getdir_root():
    s = Store()
    put(s, "/x/y")
    put(s, "/b")
    assert s.getdir("/") == "b" and s.getdir("/", offset=1) == "x"


def test_reads_validate_paths():
    s = Store()
    for fn in (s.get, s.stat, s.getdir):
        assert code_of(fn, "bad") == ErrCode.BAD_PATH


# -- walk --------------------------------------------------------------------

def test_walk_depth_first_order_and_range():
    s = Store()
    for p in ["/b", "/a-b", "/a/c", "/a/b/z", "/a.x"]:
        put(s, p, p.encode())
    walked = []
    for i in range(10):
        try:
            walked.append(s.walk(ANY, offset=i))
        except DoozerError as e:
            assert e.code == ErrCode.RANGE
            break
    assert [e.path for e in walked] == ["/a/b/z", "/a/c", "/a-b", "/a.x", "/b"]
    assert all(e.kind == SET and e.value == e.path.encode() for e in walked)
    assert walked[0].rev == 4
    assert code_of(s.walk, ANY, offset=-1) == ErrCode.RANGE
    assert [e.path for e in s.files(Glob("/a/*"))] == ["/a/c"]
    assert [e.path for e in s.files(Glob("/a/**"))] == ["/a/b/z", "/a/c"]


def test_walk_literal_glob():
    s = Store()
    put(s, "/a/b", b"x")
    assert s.walk(Glob("/a/b")) == Event(1, "/a/b", b"x", SET)
    assert code_of(s.walk, Glob("/a")) == ErrCode.RANGE
    assert code_of(s.walk, Glob("/a/b"), offset=1) == ErrCode.RANGE


def test_walk_cache_follows_changes():
    s = Store()
    put(s, "/b")
    assert s.walk(ANY).path == "/b"
    put(s, "/a")
    assert s.walk(ANY).path == "/a"
    rm(s, "/a")
    assert s.walk(ANY).path == "/b"
    put(s, "/b", b"new")
    assert s.walk(ANY) == Event(4, "/b", b"new", SET)


# -- past revisions ----------------------------------------------------------

def test_reads_at_past_revisions():
    s = Store()
    put(s, "/a", b"1")          # 1
    put(s, "/a", b"2")          # 2
    put(s, "/d/x", b"x")        # 3
    rm(s, "/a")                 # 4
    put(s, "/d/y", b"yy")       # 5
    rm(s, "/d/x")               # 6
    assert s.get("/a", 0) == (b"", 0)
    assert s.get("/a", 1) == (b"1", 1)
    assert s.get("/a", 3) == (b"2", 2)
    assert s.get("/a", 4) == (b"", 0)
    assert s.stat("/d", 2) == (0, 0)
    assert s.stat("/d", 3) == (1, DIR)
    assert s.stat("/d", 5) == (2, DIR)
    assert s.stat("/d", 6) == (1, DIR)
    assert code_of(s.get, "/d", 5) == ErrCode.ISDIR
    assert s.get("/d", 2) == (b"", 0)
    assert code_of(s.getdir, "/d", 2) == ErrCode.NOENT
    assert s.getdir("/d", 5, 0) == "x" and s.getdir("/d", 5, 1) == "y"
    assert code_of(s.getdir, "/d", 5, 2) == ErrCode.RANGE
    assert code_of(s.getdir, "/a", 2) == ErrCode.NOTDIR
    assert s.stat("/", 0) == (0, DIR)
    assert s.stat("/", 3) == (2, DIR)
    assert s.stat("/", 6) == (1, DIR)
    assert [e.path for e in s.files(ANY, 5)] == ["/d/x", "/d/y"]
    assert s.walk(ANY, 2) == Event(2, "/a", b"2", SET)
    assert s.walk(ANY, 5, 1) == Event(5, "/d/y", b"yy", SET)
    assert code_of(s.walk, ANY, 0) == ErrCode.RANGE
    assert s.files(ANY, 6) == [Event(5, "/d/y", b"yy", SET)]


def test_read_above_current_revision_is_callers_job():
    s = Store()
    with pytest.raises(ValueError):
        s.get("/a", 1)


def test_history_window_by_count_exact_boundaries():
    s = Store(history=3)
    for i in range(1, 7):
        put(s, "/a", str(i).encode())
    # keeps the events of revisions 4..6, so the state at 3 is still known
    assert s.floor == 3
    assert s.get("/a", 3) == (b"3", 3)
    assert s.get("/a", 4) == (b"4", 4)
    assert code_of(s.get, "/a", 2) == ErrCode.TOO_LATE
    assert code_of(s.stat, "/a", 2) == ErrCode.TOO_LATE
    assert code_of(s.getdir, "/", 2) == ErrCode.TOO_LATE
    assert code_of(s.walk, ANY, 2) == ErrCode.TOO_LATE
    assert code_of(s.add_watch, ANY, 3, lambda e: None) == ErrCode.TOO_LATE
    seen = []
    s.add_watch(ANY, 4, seen.append)
    assert [e.rev for e in seen] == [4, 5, 6]


def test_history_keeps_untouched_files_readable():
    s = Store(history=2)
    put(s, "/old", b"o")          # 1
    put(s, "/gone", b"g")         # 2
    rm(s, "/gone")                # 3
    put(s, "/x", b"1")            # 4
    put(s, "/x", b"2")            # 5
    put(s, "/x", b"3")            # 6
    assert s.floor == 4
    assert s.get("/old", 4) == (b"o", 1)
    assert s.get("/gone", 4) == (b"", 0)
    assert s.get("/x", 4) == (b"1", 4)
    assert s.get("/x", 5) == (b"2", 5)
    assert s.stat("/", 4) == (2, DIR)
    assert [e.path for e in s.files(ANY, 4)] == ["/old", "/x"]


def test_history_window_by_bytes():
    size = 100 + 2 + 64          # value + path + per-event overhead
    s = Store(history=1000, history_bytes=3 * size)
    for i in range(1, 6):
        put(s, "/a", bytes([48 + i]) * 100)
    assert s.floor == 2
    assert s.get("/a", 2)[1] == 2
    assert code_of(s.get, "/a", 1) == ErrCode.TOO_LATE
    seen = []
    s.add_watch(Glob("/a"), 3, seen.append)
    assert [e.rev for e in seen] == [3, 4, 5]
    assert code_of(s.add_watch, ANY, 2, seen.append) == ErrCode.TOO_LATE


def test_history_bytes_always_keeps_the_last_event():
    s = Store(history=10, history_bytes=1)
    put(s, "/a", b"x" * 1000)
    put(s, "/a", b"y" * 1000)
    assert s.floor == 1
    seen = []
    s.add_watch(ANY, 2, seen.append)
    assert [e.rev for e in seen] == [2]


def test_history_of_one():
    s = Store(history=1)
    put(s, "/a", b"1")
    put(s, "/b", b"2")
    rm(s, "/a")
    assert s.floor == 2
    assert s.get("/a", 2) == (b"1", 1)
    assert s.get("/a", 3) == (b"", 0)
    assert code_of(s.get, "/a", 1) == ErrCode.TOO_LATE


def test_files_deleted_and_recreated_across_the_window():
    s = Store(history=2)
    put(s, "/p", b"1")      # 1
    rm(s, "/p")             # 2
    put(s, "/q")            # 3
    put(s, "/q")            # 4  floor 2
    put(s, "/p", b"2")      # 5  floor 3
    assert s.get("/p", 3) == (b"", 0)
    assert s.get("/p", 4) == (b"", 0)
    assert s.get("/p", 5) == (b"2", 5)
    put(s, "/q")            # 6  floor 4
    put(s, "/q")            # 7  floor 5
    assert s.get("/p", 5) == (b"2", 5)


# -- watches -----------------------------------------------------------------

def test_watch_replays_history_then_live_in_order():
    s = Store()
    put(s, "/a", b"1")
    put(s, "/b", b"2")
    rm(s, "/a")
    seen = []
    w = s.add_watch(ANY, 2, seen.append)
    assert [(e.rev, e.path, e.kind) for e in seen] == [(2, "/b", SET), (3, "/a", DEL)]
    put(s, "/c", b"3")
    assert seen[-1] == Event(4, "/c", b"3", SET)
    assert s.watch_count == 1
    w.cancel()
    assert s.watch_count == 0 and not w.active
    put(s, "/d")
    assert len(seen) == 3
    w.cancel()  # idempotent
    assert s.watch_count == 0


def test_watch_from_zero_or_negative_means_from_one():
    s = Store()
    put(s, "/a")
    for start in (0, -5):
        seen = []
        s.add_watch(ANY, start, seen.append)
        assert [e.rev for e in seen] == [1]


def test_watch_from_next_revision_sees_only_live():
    s = Store()
    put(s, "/a")
    seen = []
    s.add_watch(ANY, 2, seen.append)
    assert seen == []
    put(s, "/a")
    assert [e.rev for e in seen] == [2]


def test_watch_from_future_revision_skips_earlier_events():
    s = Store()
    seen = []
    s.add_watch(ANY, 3, seen.append)
    put(s, "/a")
    put(s, "/a")
    put(s, "/a")
    assert [e.rev for e in seen] == [3]


def test_watch_filters_by_glob():
    s = Store()
    seen_exact, seen_star, seen_deep = [], [], []
    s.add_watch(Glob("/a/b"), 1, seen_exact.append)
    s.add_watch(Glob("/a/*"), 1, seen_star.append)
    s.add_watch(Glob("/a/**"), 1, seen_deep.append)
    for p in ["/a/b", "/a/c", "/a/b2/x", "/b", "/a/b"]:
        put(s, p)
    assert [e.rev for e in seen_exact] == [1, 5]
    assert [e.rev for e in seen_star] == [1, 2, 5]
    assert [e.rev for e in seen_deep] == [1, 2, 3, 5]


def test_cancel_own_watch_inside_callback_stops_delivery():
    s = Store()
    put(s, "/a")
    put(s, "/a")
    seen = []
    mine = []

    def cancel_self(event):
        seen.append(event.rev)
        mine[0].cancel()

    w = s.add_watch(ANY, 3, cancel_self)
    mine.append(w)
    put(s, "/a")
    put(s, "/a")
    assert seen == [3] and s.watch_count == 0 and not w.active


def test_cancel_after_replay_stops_live_delivery():
    s = Store()
    for _ in range(3):
        put(s, "/a")
    seen = []
    w = s.add_watch(ANY, 1, lambda e: seen.append(e.rev))
    assert seen == [1, 2, 3] and w.active and s.watch_count == 1
    w.cancel()
    put(s, "/a")
    assert seen == [1, 2, 3] and s.watch_count == 0


def test_cancel_of_another_watch_inside_callback():
    s = Store()
    seen_b = []
    wb = []

    def killer(event):
        wb[0].cancel()

    s.add_watch(Glob("/a"), 1, killer)
    wb.append(s.add_watch(Glob("/a"), 1, seen_b.append))
    put(s, "/a")
    assert seen_b == []
    assert s.watch_count == 1


def test_many_watches_exact_and_wild_index():
    s = Store()
    counts = {}
    watches = []
    for i in range(50):
        path = f"/k{i}"
        watches.append(s.add_watch(Glob(path), 1, lambda e, p=path: counts.__setitem__(
            p, counts.get(p, 0) + 1)))
    wild = []
    watches.append(s.add_watch(Glob("/k*"), 1, wild.append))
    assert s.watch_count == 51
    for i in range(50):
        put(s, f"/k{i}")
    put(s, "/k0")
    assert counts == {f"/k{i}": (2 if i == 0 else 1) for i in range(50)}
    assert len(wild) == 51
    for w in watches:
        w.cancel()
    assert s.watch_count == 0
    assert s._watches._exact == {} and s._watches._wild == {}


def test_two_exact_watches_on_same_path_and_partial_cancel():
    s = Store()
    a, b = [], []
    wa = s.add_watch(Glob("/x"), 1, a.append)
    s.add_watch(Glob("/x"), 1, b.append)
    put(s, "/x")
    wa.cancel()
    put(s, "/x")
    assert [e.rev for e in a] == [1] and [e.rev for e in b] == [1, 2]
    assert s.watch_count == 1


def test_watch_added_inside_callback_gets_each_event_once():
    s = Store()
    seen = []

    def add_more(event):
        if event.rev == 1:
            s.add_watch(Glob("/a"), 1, seen.append)

    s.add_watch(Glob("/a"), 1, add_more)
    put(s, "/a")
    put(s, "/a")
    assert [e.rev for e in seen] == [1, 2]


def test_wild_watch_added_inside_exact_callback_gets_event_once():
    s = Store()
    seen = []

    def add_wild(event):
        if event.rev == 1:
            s.add_watch(ANY, 1, seen.append)

    s.add_watch(Glob("/a"), 1, add_wild)
    put(s, "/a")
    assert [e.rev for e in seen] == [1]


def test_watch_timing_across_window_with_live_pruning():
    s = Store(history=2)
    seen = []
    s.add_watch(ANY, 1, seen.append)
    for i in range(10):
        put(s, f"/p{i % 3}")
    assert [e.rev for e in seen] == list(range(1, 11))


# -- call_when_applied ---------------------------------------------------------

def test_call_when_applied():
    s = Store()
    calls = []
    s.call_when_applied(0, lambda: calls.append("now"))
    assert calls == ["now"]
    s.call_when_applied(2, lambda: calls.append("two-a"))
    s.call_when_applied(1, lambda: calls.append("one"))
    s.call_when_applied(2, lambda: calls.append("two-b"))
    put(s, "/a")
    assert calls == ["now", "one"]
    s.apply(SetFile("/a", 0, b""))  # fails: no revision taken
    assert calls == ["now", "one"]
    put(s, "/a")
    assert calls == ["now", "one", "two-a", "two-b"]


def test_call_when_applied_runs_after_watches_see_the_event():
    s = Store()
    order = []
    s.add_watch(ANY, 1, lambda e: order.append("watch"))
    s.call_when_applied(1, lambda: order.append(("applied", s.get("/a"))))
    put(s, "/a", b"x")
    assert order == ["watch", ("applied", (b"x", 1))]


# -- mutation encoding ---------------------------------------------------------

_paths = st.lists(st.text("abz09.-_", min_size=1, max_size=5), min_size=1,
                  max_size=4).map(lambda parts: "/" + "/".join(parts))
_revs = st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
_mutations = st.one_of(
    st.builds(SetFile, _paths, _revs, st.binary(max_size=64)),
    st.builds(DeleteFile, _paths, _revs),
    st.just(Nop()),
)


@given(_mutations)
def test_encode_decode_round_trip(m):
    data = encode(m)
    assert isinstance(data, bytes)
    assert decode(data) == m
    assert decode(bytearray(data)) == m


@given(st.one_of(st.binary(max_size=64), st.builds(
    lambda tag, rest: tag + rest, st.sampled_from([b"G", b"R", b"T", b"L", b"S", b"D"]),
    st.binary(max_size=64))))
def test_decode_garbage_raises_only_doozer_error(data):
    try:
        m = decode(data)
    except DoozerError as e:
        assert e.code == ErrCode.OTHER
    else:
        assert isinstance(m, (SetFile, DeleteFile, Nop, GrantLease, RevokeLease, Txn))
        assert encode(m) == data  # one encoding per mutation


@given(_mutations, st.data())
def test_decode_truncated_or_extended(m, data):
    raw = encode(m)
    cut = data.draw(st.integers(0, len(raw) - 1)) if len(raw) > 1 else 0
    if isinstance(m, SetFile):
        # a SetFile's value runs to the end, so only cuts into the header/path fail
        if cut < len(raw) - len(m.value):
            assert code_of(decode, raw[:cut]) == ErrCode.OTHER
    else:
        assert code_of(decode, raw[:cut]) == ErrCode.OTHER
        assert code_of(decode, raw + b"x") == ErrCode.OTHER


def test_decode_specific_bad_inputs():
    for bad in [b"", b"S", b"X" + b"\0" * 10, b"D" + b"\0" * 8 + b"\0\5/a",
                b"S" + b"\0" * 8 + b"\0\2\xff\xfe", b"N\0"]:
        assert code_of(decode, bad) == ErrCode.OTHER


def test_encode_rejects_non_mutations():
    with pytest.raises(TypeError):
        encode("x")


def test_decoded_bad_path_is_rejected_by_store():
    m = decode(b"S" + (1).to_bytes(8, "big", signed=True) + (3).to_bytes(2, "big") + b"a b")
    assert m == SetFile("a b", 1, b"")
    assert Store().apply(m).error == ErrCode.BAD_PATH


def test_call_when_applied_returns_cancellable_waiter():
    s = Store()
    calls = []
    w1 = s.call_when_applied(1, lambda: calls.append(1))
    w2 = s.call_when_applied(2, lambda: calls.append(2))
    assert s.rev_waiter_count == 2
    w1.cancel()
    w1.cancel()
    assert s.rev_waiter_count == 1
    put(s, "/a")
    put(s, "/a")
    assert calls == [2] and s.rev_waiter_count == 0
    w2.cancel()  # after firing: harmless
    assert s.rev_waiter_count == 0
    now = s.call_when_applied(2, lambda: calls.append("now"))
    now.cancel()
    assert calls == [2, "now"] and s.rev_waiter_count == 0


def test_cancelled_waiters_are_compacted_and_the_rest_still_fire():
    s = Store()
    calls = []
    waiters = [s.call_when_applied(1 + i % 3, lambda i=i: calls.append(i))
               for i in range(200)]
    for w in waiters[:150]:
        w.cancel()
    assert s.rev_waiter_count == 50
    assert len(s._rev_waiters) <= 2 * 50 + 1  # cancelled entries do not pile up
    for _ in range(3):
        put(s, "/a")
    assert sorted(calls) == list(range(150, 200))
    assert s.rev_waiter_count == 0


def test_waiter_cancelled_by_an_earlier_waiter_does_not_fire():
    s = Store()
    calls = []
    later = []
    s.call_when_applied(1, lambda: later[0].cancel())
    for i in range(100):
        s.call_when_applied(1, lambda i=i: calls.append(i))
    later.append(s.call_when_applied(1, lambda: calls.append("cancelled")))
    others = [s.call_when_applied(1, lambda: None) for _ in range(100)]
    # cancel most of the rest from inside the wake loop to force a compaction
    s.call_when_applied(1, lambda: [w.cancel() for w in others])
    put(s, "/a")
    assert calls == list(range(100)) and s.rev_waiter_count == 0
    put(s, "/a")
    assert calls == list(range(100))


def _heap_after(waiting, cancelled):
    s = Store()
    waiters = [s.call_when_applied(1, lambda: None) for _ in range(waiting)]
    for w in waiters[:cancelled]:
        w.cancel()
    assert s.rev_waiter_count == waiting - cancelled
    return len(s._rev_waiters)


def test_waiter_heap_is_rebuilt_only_when_big_and_mostly_cancelled():
    """Cancel costs amortized O(1): the heap of waiters is rebuilt once it
    holds more than 64 entries of which more than half are cancelled."""
    assert _heap_after(65, 1) == 65      # big, but mostly live: kept
    assert _heap_after(64, 33) == 64     # mostly cancelled, but small: kept
    assert _heap_after(65, 33) == 32     # big and mostly cancelled: rebuilt
    assert _heap_after(130, 65) == 130   # exactly half cancelled: kept
    assert _heap_after(130, 66) == 64


# -- what a client is told (details go out on the wire) ----------------------

def detail_of(fn, *args, **kw):
    with pytest.raises(DoozerError) as e:
        fn(*args, **kw)
    return e.value.code, e.value.detail


def test_error_details_name_what_was_wrong():
    s = Store(history=2)
    put(s, "/d/f")
    assert detail_of(s.get, "/d") == (ErrCode.ISDIR, "/d")
    assert detail_of(s.getdir, "/d/f") == (ErrCode.NOTDIR, "/d/f")
    assert detail_of(s.getdir, "/x") == (ErrCode.NOENT, "/x")
    assert detail_of(s.getdir, "/d", offset=1) == (ErrCode.RANGE, "offset 1")
    assert detail_of(s.walk, ANY, offset=-1) == (ErrCode.RANGE, "offset -1")
    assert detail_of(s.walk, ANY, offset=1) == (ErrCode.RANGE, "no more matches")
    for _ in range(3):
        put(s, "/d/f")           # rev 4, floor 2
    assert detail_of(s.get, "/d/f", 1) == (ErrCode.TOO_LATE, "revision 1 is older than 2")
    assert detail_of(s.add_watch, ANY, 2, print) == (
        ErrCode.TOO_LATE, "revision 2 is older than 3")
    assert detail_of(s.first_event, ANY, 1) == (
        ErrCode.TOO_LATE, "revision 1 is older than 3")
    with pytest.raises(ValueError, match=r"^revision 5 is not applied yet$"):
        s.get("/d/f", 5)


def test_mutation_errors_say_what_was_wrong():
    header = (1).to_bytes(8, "big", signed=True)
    for bad in [b"S" + header,                                  # header cut short
                b"S" + header + b"\0\5/a",                      # path cut short
                b"S" + header + b"\0\2\xff\xfe",                # path not ASCII
                b"X" + header + b"\0\2/a"]:                     # unknown tag
        assert detail_of(decode, bad) == (ErrCode.OTHER, "bad mutation")
    with pytest.raises(TypeError, match=r"^not a mutation: 'x'$"):
        encode("x")


def test_a_mutation_with_an_empty_path_round_trips_and_is_refused_on_apply():
    for m in (SetFile("", 5, b""), DeleteFile("", 5)):
        assert len(encode(m)) == 11 and decode(encode(m)) == m
        assert Store().apply(m).error == ErrCode.BAD_PATH


def test_past_directory_listings_name_children_not_descendants():
    s = Store()
    put(s, "/a/b/c/d")           # 1
    put(s, "/a/x")               # 2
    rm(s, "/a/x")                # 3
    assert [s.getdir("/a", 2, i) for i in range(2)] == ["b", "x"]
    assert s.stat("/a", 2) == (2, DIR) and s.getdir("/a/b", 2) == "c"


def test_past_walks_go_depth_first_by_names():
    s = Store()
    put(s, "/a-b")               # 1
    put(s, "/a/b")               # 2
    put(s, "/c")                 # 3
    rm(s, "/c")                  # 4
    assert [e.path for e in s.files(ANY, 3)] == ["/a/b", "/a-b", "/c"]
    assert s.walk(ANY, 3).path == "/a/b"


def test_a_watch_on_its_own():
    from doozertw.store import Watch
    seen = []
    watch = Watch(Glob("/a"), seen.append)
    assert watch.from_rev == 1 and watch.active is True
    assert watch.deliver(Event(1, "/a", b"v", SET)) is True and len(seen) == 1
    watch.cancel()
    assert watch.active is False

    def boom(event):
        raise RuntimeError("x")

    errors = []
    failing = Watch(Glob("/a"), boom, on_error=errors.append)
    assert failing.deliver(Event(1, "/a", b"v", SET)) is False
    assert failing.active is False and [e.code for e in errors] == [ErrCode.OTHER]
