"""The Store against a reference model of full snapshots per revision.

The model keeps, for every revision, the whole tree as a dict
path -> (value, rev), plus the list of events; every answer of the Store
(including errors, past reads, the TOO_LATE window and watch deliveries) is
compared with what the model derives from those snapshots directly.
"""

import re

from hypothesis import settings, strategies as st
from hypothesis.stateful import (
    Bundle, RuleBasedStateMachine, consumes, invariant, rule)

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import DEL, DIR, SET, DeleteFile, Event, Glob, SetFile, Store

HISTORY = 5
PATHS = ["/a", "/a/b", "/a/b/c", "/b", "/c", "/c/d", "/c/e"]
DIRS = ["/", "/a", "/a/b", "/c", "/b", "/zz"]
GLOBS = ["/**", "/a/**", "/*", "/a/*", "/?", "/a/b", "/c/*", "/*/b", "/**/c",
         "/*/*", "/c/?", "/zz"]
VALUES = [b"", b"x", b"hello", b"\x00\xff"]


def model_match(pattern, path):
    """Glob semantics written independently of paths.py."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.fullmatch("".join(out), path) is not None


def children(snap, path):
    prefix = "/" if path == "/" else path + "/"
    return sorted({p[len(prefix):].split("/")[0] for p in snap if p.startswith(prefix)})


def walk_order(snap):
    return sorted(snap, key=lambda p: p.split("/"))


class Outcome:
    """What the model expects from a read: a value or an error code."""

    def __init__(self, value=None, error=None):
        self.value, self.error = value, error


def run(fn, *args):
    try:
        return Outcome(value=fn(*args))
    except DoozerError as e:
        return Outcome(error=e.code)


class StoreModel(RuleBasedStateMachine):
    watches = Bundle("watches")

    def __init__(self):
        super().__init__()
        self.store = Store(history=HISTORY)
        self.snapshots = [{}]
        self.events = []
        self.live = {}

    # -- helpers -------------------------------------------------------------

    @property
    def rev(self):
        return len(self.snapshots) - 1

    @property
    def floor(self):
        return max(0, self.rev - HISTORY)

    def current(self):
        return self.snapshots[-1]

    def choose_rev(self, data, path):
        found = self.current().get(path)
        cur = found[1] if found else 0
        return data.draw(st.sampled_from(
            [-1, 0, cur, max(cur - 1, 0) if cur else -3, cur + 1, self.rev + 7]))

    def expected_write(self, path, rev, is_set):
        snap = self.current()
        if path == "/" or children(snap, path):
            return ErrCode.ISDIR
        cur = snap[path][1] if path in snap else 0
        if rev != -1 and rev < cur:
            return ErrCode.REV_MISMATCH
        if is_set:
            parts = path.split("/")
            for i in range(2, len(parts)):
                if "/".join(parts[:i]) in snap:
                    return ErrCode.NOTDIR
        return None

    def commit(self, outcome, path, value, kind):
        new_rev = self.rev + 1
        assert outcome.error is None
        assert outcome.rev == new_rev
        event = Event(new_rev, path, value, kind)
        assert outcome.event == event
        snap = dict(self.current())
        if kind == SET:
            snap[path] = (value, new_rev)
        else:
            snap.pop(path, None)
        self.snapshots.append(snap)
        self.events.append(event)

    def read_rev(self, data):
        return data.draw(st.one_of(
            st.none(), st.integers(min_value=-1, max_value=self.rev)))

    def snapshot_at(self, rev):
        """The snapshot, or None if the model says TOO_LATE."""
        if rev is None:
            return self.current()
        if rev < self.floor:
            return None
        return self.snapshots[rev]

    # -- writes ---------------------------------------------------------------

    @rule(path=st.sampled_from(PATHS), value=st.sampled_from(VALUES), data=st.data())
    def set(self, path, value, data):
        rev = self.choose_rev(data, path)
        expected = self.expected_write(path, rev, True)
        out = self.store.apply(SetFile(path, rev, value))
        if expected is None:
            self.commit(out, path, value, SET)
        else:
            assert out.error == expected and out.rev == self.rev and out.event is None

    @rule(path=st.sampled_from(PATHS + ["/a/b/c/d"]), data=st.data())
    def delete(self, path, data):
        rev = self.choose_rev(data, path)
        expected = self.expected_write(path, rev, False)
        out = self.store.apply(DeleteFile(path, rev))
        if expected is None:
            self.commit(out, path, b"", DEL)
        else:
            assert out.error == expected and out.rev == self.rev and out.event is None

    # -- reads ---------------------------------------------------------------

    @rule(path=st.sampled_from(PATHS + DIRS), data=st.data())
    def get(self, path, data):
        rev = self.read_rev(data)
        snap = self.snapshot_at(rev)
        got = run(self.store.get, path, rev)
        if snap is None:
            assert got.error == ErrCode.TOO_LATE
        elif path in snap:
            assert got.value == snap[path]
        elif path == "/" or children(snap, path):
            assert got.error == ErrCode.ISDIR
        else:
            assert got.value == (b"", 0)

    @rule(path=st.sampled_from(PATHS + DIRS), data=st.data())
    def stat(self, path, data):
        rev = self.read_rev(data)
        snap = self.snapshot_at(rev)
        got = run(self.store.stat, path, rev)
        if snap is None:
            assert got.error == ErrCode.TOO_LATE
        elif path in snap:
            assert got.value == (len(snap[path][0]), snap[path][1])
        elif path == "/" or children(snap, path):
            assert got.value == (len(children(snap, path)), DIR)
        else:
            assert got.value == (0, 0)

    @rule(path=st.sampled_from(PATHS + DIRS), offset=st.integers(-1, 3), data=st.data())
    def getdir(self, path, offset, data):
        rev = self.read_rev(data)
        snap = self.snapshot_at(rev)
        got = run(self.store.getdir, path, rev, offset)
        if snap is None:
            assert got.error == ErrCode.TOO_LATE
        elif path in snap:
            assert got.error == ErrCode.NOTDIR
        else:
            names = children(snap, path)
            if not names and path != "/":
                assert got.error == ErrCode.NOENT
            elif 0 <= offset < len(names):
                assert got.value == names[offset]
            else:
                assert got.error == ErrCode.RANGE

    @rule(pattern=st.sampled_from(GLOBS), offset=st.integers(0, 4), data=st.data())
    def walk(self, pattern, offset, data):
        rev = self.read_rev(data)
        snap = self.snapshot_at(rev)
        got = run(self.store.walk, Glob(pattern), rev, offset)
        if snap is None:
            assert got.error == ErrCode.TOO_LATE
            return
        matching = [p for p in walk_order(snap) if model_match(pattern, p)]
        if offset < len(matching):
            p = matching[offset]
            assert got.value == Event(snap[p][1], p, snap[p][0], SET)
        else:
            assert got.error == ErrCode.RANGE
        if offset == 0:
            expected = [Event(snap[p][1], p, snap[p][0], SET) for p in matching]
            assert self.store.files(Glob(pattern), rev) == expected

    # -- watches --------------------------------------------------------------

    @rule(target=watches, pattern=st.sampled_from(GLOBS), data=st.data())
    def add_watch(self, pattern, data):
        from_rev = data.draw(st.integers(min_value=-1, max_value=self.rev + 3))
        received = []
        try:
            w = self.store.add_watch(Glob(pattern), from_rev, received.append)
        except DoozerError as e:
            assert e.code == ErrCode.TOO_LATE
            assert max(from_rev, 1) <= self.floor
            return None
        assert max(from_rev, 1) > self.floor
        self.live[w.id] = (w, pattern, max(from_rev, 1), received)
        return w

    @rule(w=consumes(watches))
    def cancel_watch(self, w):
        if w is not None:
            w.cancel()
            w.cancel()
            entry = self.live.pop(w.id, None)
            if entry is not None:
                entry[0].cancel()  # its replacement after a restore, if any

    @rule(pattern=st.sampled_from(GLOBS), data=st.data())
    def first_event(self, pattern, data):
        from_rev = data.draw(st.integers(min_value=-1, max_value=self.rev + 2))
        got = run(self.store.first_event, Glob(pattern), from_rev)
        start = max(from_rev, 1)
        if start <= self.floor:
            assert got.error == ErrCode.TOO_LATE
            return
        matching = [e for e in self.events if e.rev >= start and model_match(pattern, e.path)]
        assert got.value == (matching[0] if matching else None)

    # -- snapshots ---------------------------------------------------------------

    @rule()
    def snapshot_and_restore_into_a_fresh_store(self):
        """A restart from a snapshot: clients re-watch from where they started."""
        data = self.store.snapshot()
        fresh = Store(history=HISTORY)
        fresh.restore(data)
        assert fresh.snapshot() == data
        self.store = fresh
        for key, (old, pattern, start, _) in list(self.live.items()):
            old.cancel()
            received = []
            try:
                watch = fresh.add_watch(Glob(pattern), start, received.append)
            except DoozerError as e:
                assert e.code == ErrCode.TOO_LATE and start <= self.floor
                del self.live[key]
                continue
            assert start > self.floor
            self.live[key] = (watch, pattern, start, received)

    @rule()
    def restore_own_snapshot_in_place(self):
        """Same revision: contents equal, live watches carry on."""
        data = self.store.snapshot()
        self.store.restore(data)
        assert self.store.snapshot() == data

    # -- invariants -------------------------------------------------------------

    @invariant()
    def revisions_and_counts(self):
        assert self.store.rev == self.rev
        assert self.store.floor == self.floor
        assert self.store.file_count == len(self.current())
        assert self.store.watch_count == len(self.live)
        assert [e.rev for e in self.events] == list(range(1, self.rev + 1))

    @invariant()
    def watches_received_exactly_their_events(self):
        for _watch, pattern, start, received in self.live.values():
            expected = [e for e in self.events
                        if e.rev >= start and model_match(pattern, e.path)]
            assert received == expected


StoreModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None)
TestStoreModel = StoreModel.TestCase
