"""The Store against a reference model of full snapshots per revision.

The model keeps, for every revision, the whole tree as a dict
path -> (value, rev), plus the list of events; every answer of the Store
(including errors, past reads, the TOO_LATE window and watch deliveries) is
compared with what the model derives from those snapshots directly. It also
keeps the leases (id -> ttl) and which lease owns each file, and applies
transactions and revocations op by op, written independently of the store.
"""

import re

from hypothesis import settings, strategies as st
from hypothesis.stateful import (
    Bundle, RuleBasedStateMachine, consumes, invariant, rule)

from doozertw.errors import DoozerError, ErrCode
from doozertw.store import DEL, DIR, SET, DeleteFile, Event, Glob, SetFile, Store
from doozertw.store.mutation import Compare, GrantLease, RevokeLease, Txn

HISTORY = 5
PATHS = ["/a", "/a/b", "/a/b/c", "/b", "/c", "/c/d", "/c/e"]
DIRS = ["/", "/a", "/a/b", "/c", "/b", "/zz"]
GLOBS = ["/**", "/a/**", "/*", "/a/*", "/?", "/a/b", "/c/*", "/*/b", "/**/c",
         "/*/*", "/c/?", "/zz"]
VALUES = [b"", b"x", b"hello", b"\x00\xff"]
LEASES = [0, 1, 2, 3, 9]


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
        self.leases = {}
        self.owner = {}
        self.next_lease = 1

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

    def commit(self, outcome, path, value, kind, lease=0):
        new_rev = self.rev + 1
        assert outcome.error is None
        assert outcome.rev == new_rev
        event = Event(new_rev, path, value, kind)
        assert outcome.event == event
        self.change(path, value, kind, lease)

    def change(self, path, value, kind, lease=0):
        """One more revision: the model's own apply of a SET or DEL."""
        new_rev = self.rev + 1
        snap = dict(self.current())
        self.owner.pop(path, None)
        if kind == SET:
            snap[path] = (value, new_rev)
            if lease:
                self.owner[path] = lease
        else:
            snap.pop(path, None)
        self.snapshots.append(snap)
        self.events.append(Event(new_rev, path, value, kind))
        return new_rev

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

    @rule(path=st.sampled_from(PATHS), value=st.sampled_from(VALUES),
          lease=st.sampled_from(LEASES))
    def set_with_lease(self, path, value, lease):
        expected = self.expected_write(path, -1, True)
        if expected is None and lease and lease not in self.leases:
            expected = ErrCode.NOENT
        out = self.store.apply(SetFile(path, -1, value, lease))
        if expected is None:
            self.commit(out, path, value, SET, lease)
        else:
            assert out.error == expected and out.rev == self.rev and out.event is None

    @rule(lease=st.sampled_from(LEASES), ttl=st.integers(0, 3))
    def grant(self, lease, ttl):
        out = self.store.apply(GrantLease(lease, ttl))
        if ttl < 1:
            assert out.error == ErrCode.RANGE
        elif lease in self.leases:
            assert out.error == ErrCode.REV_MISMATCH
        else:
            chosen = lease or self.next_lease
            assert out.error is None and out.lease == chosen and out.rev == self.rev
            self.leases[chosen] = ttl
            self.next_lease = max(self.next_lease, chosen + 1)

    @rule(lease=st.sampled_from(LEASES), expired=st.booleans())
    def revoke(self, lease, expired):
        out = self.store.apply(RevokeLease(lease, expired))
        if lease not in self.leases:
            assert out.error == ErrCode.NOENT and out.events == ()
            return
        del self.leases[lease]
        owned = walk_order([p for p, owner in self.owner.items() if owner == lease])
        start = self.rev
        for path in owned:
            self.change(path, b"", DEL)
        assert out.error is None and out.rev == self.rev
        assert list(out.events) == self.events[start:]

    @rule(data=st.data())
    def txn(self, data):
        compares = data.draw(st.lists(st.one_of(
            st.builds(lambda p, r: Compare(p, rev=r), st.sampled_from(PATHS + DIRS),
                      st.integers(0, self.rev + 1) | st.just(DIR)),
            st.builds(lambda p, v: Compare(p, value=v), st.sampled_from(PATHS + DIRS),
                      st.sampled_from(VALUES))), max_size=3))
        op = st.one_of(
            st.builds(lambda p, v, lease: SetFile(p, -1, v, lease), st.sampled_from(PATHS),
                      st.sampled_from(VALUES), st.sampled_from(LEASES)),
            st.builds(lambda p: DeleteFile(p, -1), st.sampled_from(PATHS + ["/a/b/c/d"])))
        success = tuple(data.draw(st.lists(op, max_size=3)))
        failure = tuple(data.draw(st.lists(op, max_size=2)))
        out = self.store.apply(Txn(tuple(compares), success, failure))
        snap = self.current()
        bad_compare = any(c.rev is not None and c.rev < 0 for c in compares)
        if bad_compare:
            assert out.error == ErrCode.RANGE and self.store.rev == self.rev
            return
        held = all(self.compare_holds(snap, c) for c in compares)
        ops = success if held else failure
        expected = self.txn_error(ops)
        if expected is not None:
            assert out.error == expected and out.events == () and out.rev == self.rev
            return
        start, revs = self.rev, []
        for o in ops:
            if isinstance(o, SetFile):
                revs.append(self.change(o.path, o.value, SET, o.lease))
            elif o.path in self.current():
                revs.append(self.change(o.path, b"", DEL))
            else:
                revs.append(0)
        assert out.error is None and out.succeeded == held
        assert out.revs == tuple(revs) and out.rev == self.rev
        assert list(out.events) == self.events[start:]

    @staticmethod
    def compare_holds(snap, compare):
        found = snap.get(compare.path)
        if compare.value is not None:
            return found is not None and found[0] == compare.value
        if found is not None:
            return found[1] == compare.rev
        is_dir = compare.path == "/" or bool(children(snap, compare.path))
        return compare.rev == 0 and not is_dir

    def txn_error(self, ops):
        paths = [o.path for o in ops]
        if len(set(paths)) != len(paths) or any(
                q.startswith(p + "/") for p in paths for q in paths):
            return ErrCode.BAD_PATH
        for o in ops:
            error = self.expected_write(o.path, -1, isinstance(o, SetFile))
            if error is None and isinstance(o, SetFile) and o.lease \
                    and o.lease not in self.leases:
                error = ErrCode.NOENT
            if error is not None:
                return error
        return None

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
    def leases_and_their_files(self):
        assert self.store.leases.items() == sorted(self.leases.items())
        assert self.store.leases.attachments() == sorted(self.owner.items())
        assert self.store.leases.next_id == self.next_lease
        for lease in self.leases:
            owned = walk_order([p for p, o in self.owner.items() if o == lease])
            assert list(self.store.leases.files(lease)) == owned

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
