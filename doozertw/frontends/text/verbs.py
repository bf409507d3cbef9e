"""The text protocol's verbs: argument parsing and one method per command.

TextVerbs is a mixin of TextProtocol (doozertw.frontends.text.protocol); its
methods use the connection state and the reply/ordering machinery defined there.
"""

from twisted.internet import defer

from doozertw.errors import PERMISSION_DENIED, DoozerError, ErrCode
from doozertw.frontends.text.framing import CRLF, parse_number, split_rest, words
from doozertw.frontends.text.admin import AdminVerbs
from doozertw.frontends.text.leases import LeaseVerbs
from doozertw.frontends.text.replies import (
    clean, event_unit, help_reply, listing, usage_of, value_unit)
from doozertw.frontends.text.txn import write_op
from doozertw.frontends.interface import CLOBBER, Glob, check_path


class _Stream:
    """One streaming watch of a connection, by its connection-local id."""

    def __init__(self, sid):
        self.id = sid
        self.watch = None
        self.active = True
        self.announced = False
        self.held = []

    def stop(self):
        self.active = False
        if self.watch is not None:
            self.watch.cancel()


READ, WRITE, OPEN = "read", "write", "open"


class TextVerbs(LeaseVerbs, AdminVerbs):
    """The commands of a TextProtocol connection, looked up through COMMANDS."""

    # -- argument parsing ---------------------------------------------------------------

    def _args(self, line, least, most):
        args = words(line)[1:]
        if len(args) < least:
            raise DoozerError(ErrCode.MISSING_ARG, "usage: " + usage_of(line))
        if len(args) > most:
            raise DoozerError(ErrCode.OTHER, "too many arguments; usage: " + usage_of(line))
        return args + [None] * (most - len(args))

    def _text(self, word):
        if len(word) > self.limits.max_path:
            raise DoozerError(ErrCode.BAD_PATH, "path too long")
        try:
            return word.decode("ascii")
        except UnicodeDecodeError:
            raise DoozerError(ErrCode.BAD_PATH, clean(word.decode("latin-1"))) from None

    def _path(self, word):
        return check_path(self._text(word), self.limits.max_path, self.limits.max_depth)

    def _glob(self, word):
        pattern = self._text(word)
        self.node.glob(pattern)
        return pattern

    # -- verbs -----------------------------------------------------------------------

    def cmd_get(self, line, literal, reply):
        path, rev = self._args(line, 1, 2)
        path, rev = self._path(path), parse_number(rev, "revision", 0)
        d = self._after_own_writes(self.node.get, path, rev)
        return self._park(d, self._future(rev)).addCallback(
            lambda found: value_unit(b"OK VALUE %d" % found[1], found[0]))

    def cmd_set(self, line, literal, reply):
        """``set [lease=ID] PATH VALUE`` (and ``cas [lease=ID] PATH REV VALUE``)."""
        op = write_op(line, literal, self.limits)
        extra = {"lease": op.lease} if op.lease else {}
        d = self._writing(self.node.set(op.path, op.rev, op.value, **extra))
        return d.addCallback(lambda new: b"OK REV %d\r\n" % new)

    cmd_cas = cmd_set

    def cmd_del(self, line, literal, reply):
        path, rev = self._args(line, 1, 2)
        path, rev = self._path(path), parse_number(rev, "revision", -1)
        d = self._writing(self.node.delete(path, CLOBBER if rev is None else rev))
        return d.addCallback(lambda new: b"OK REV %d\r\n" % new)

    def cmd_nop(self, line, literal, reply):
        self._args(line, 0, 0)
        return self._writing(self.node.nop()).addCallback(lambda _: b"OK\r\n")

    def cmd_rev(self, line, literal, reply):
        self._args(line, 0, 0)
        return self._after_own_writes(self.node.rev).addCallback(
            lambda rev: b"OK REV %d\r\n" % rev)

    def cmd_self(self, line, literal, reply):
        self._args(line, 0, 0)
        return self.node.self_id().addCallback(
            lambda name: b"OK SELF %s\r\n" % clean(name).encode("ascii"))

    def cmd_stat(self, line, literal, reply):
        if not words(line)[1:]:
            return self.admin_stat()
        path, rev = self._args(line, 1, 2)
        path, rev = self._path(path), parse_number(rev, "revision", 0)
        d = self._after_own_writes(self.node.stat, path, rev)
        return self._park(d, self._future(rev)).addCallback(
            lambda found: b"OK STAT %d %d\r\n" % (found[1], found[0]))

    def cmd_getdir(self, line, literal, reply):
        path, rev, offset = self._args(line, 1, 3)
        path, rev = self._path(path), parse_number(rev, "revision", 0)
        offset = parse_number(offset, "offset", 0)
        return self._park(self._after_own_writes(self._getdir, path, rev, offset),
                          self._future(rev))

    @defer.inlineCallbacks
    def _getdir(self, path, rev, offset):
        at = yield self._pinned(rev)
        try:
            first = yield self.node.getdir(path, at, offset or 0)
        except DoozerError as e:
            if e.code != ErrCode.RANGE or offset is not None:
                raise
            return listing(b"DIR", at, [])
        if offset is not None:
            names = [first]
        else:
            prefix = path.rstrip("/") + "/"
            files = self.node.files(Glob(prefix + "**", len(prefix) + 2), at)
            names = sorted({f.path[len(prefix):].split("/", 1)[0] for f in files})
        return listing(b"DIR", at, [n.encode("ascii") + CRLF for n in names])

    def cmd_walk(self, line, literal, reply):
        glob, rev, offset = self._args(line, 1, 3)
        glob, rev = self._glob(glob), parse_number(rev, "revision", 0)
        offset = parse_number(offset, "offset", 0)
        return self._park(self._after_own_writes(self._walk, glob, rev, offset),
                          self._future(rev))

    @defer.inlineCallbacks
    def _walk(self, glob, rev, offset):
        at = yield self._pinned(rev)
        try:
            first = yield self.node.walk(glob, at, offset or 0)
        except DoozerError as e:
            if e.code != ErrCode.RANGE or offset is not None:
                raise
            return listing(b"WALK", at, [])
        found = [first] if offset is not None else self.node.files(self.node.glob(glob), at)
        units = [value_unit(b"FILE %d %s" % (f.rev, f.path.encode("ascii")), f.value)
                 for f in found]
        return listing(b"WALK", at, units)

    def _pinned(self, rev):
        return defer.succeed(rev) if rev is not None else self.node.rev()

    def cmd_wait(self, line, literal, reply):
        glob, rev = self._args(line, 1, 2)
        glob, rev = self._glob(glob), parse_number(rev, "revision", 0)
        return self._park(self._after_own_writes(self._wait, glob, rev)).addCallback(
            lambda event: event_unit(b"OK EVENT", event))

    @defer.inlineCallbacks
    def _wait(self, glob, rev):
        if rev is None:
            rev = (yield self.node.rev()) + 1
        event = yield self.node.wait(glob, rev)
        return event

    def cmd_watch(self, line, literal, reply):
        glob, rev = self._args(line, 1, 2)
        glob, rev = self._glob(glob), parse_number(rev, "revision", 0)
        if len(self._streams) >= self.limits.max_watches:
            raise DoozerError(ErrCode.OTHER, f"too many watches (max {self.limits.max_watches})")
        stream = _Stream(self._next_stream)
        self._next_stream += 1
        self._streams[stream.id] = stream
        reply.then = lambda: self._announce(stream)
        d = self._after_own_writes(self._start_watch, stream, glob, rev)

        def forget(failure):
            self._streams.pop(stream.id, None)
            stream.stop()
            return failure

        return d.addCallbacks(lambda _: b"OK WATCHING %d\r\n" % stream.id, forget)

    @defer.inlineCallbacks
    def _start_watch(self, stream, glob, rev):
        if rev is None:
            rev = (yield self.node.rev()) + 1
        if not stream.active:
            return
        watch = self.node.watch(glob, rev, lambda event: self._on_event(stream, event))
        stream.watch = watch
        if not stream.active:
            watch.cancel()

    def _on_event(self, stream, event):
        """Called by the store, inside another client's write: must never raise."""
        try:
            if not stream.active or self._closed:
                return
            unit = event_unit(b"EVENT %d" % stream.id, event)
            if stream.announced:
                self._write(unit)
                return
            stream.held.append(unit)
            self._held_bytes += len(unit)
            if self._held_bytes > self.limits.max_output_buffer:
                self._slow_consumer()
        except Exception:
            self.log.failure("text watch {id} delivery failed", id=stream.id)

    def _announce(self, stream):
        stream.announced = True
        held, stream.held = stream.held, []
        for unit in held:
            self._held_bytes -= len(unit)
            self._write(unit)

    def _slow_consumer(self):
        if not self._streams:
            return
        self.log.warn("text client {peer} reads too slowly; cancelling {n} watches",
                      peer=self._peer(), n=len(self._streams))
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream.stop()
            unit = b"EVENT %d ERROR OTHER slow consumer\r\n" % stream.id
            if stream.announced:
                self.transport.write(unit)
            else:
                self._held_bytes += len(unit) - sum(len(u) for u in stream.held)
                stream.held = [unit]

    def cmd_unwatch(self, line, literal, reply):
        (sid,) = self._args(line, 1, 1)
        sid = parse_number(sid, "watch id", 0)
        stream = self._streams.pop(sid, None)
        if stream is None:
            raise DoozerError(ErrCode.OTHER, f"no watch {sid}")
        stream.stop()
        return b"OK\r\n"

    def cmd_access(self, line, literal, reply):
        _, secret = split_rest(line, 1)
        if not secret:
            raise DoozerError(ErrCode.MISSING_ARG, "usage: access SECRET")
        if not self.access.grant(secret):
            raise DoozerError(ErrCode.OTHER, PERMISSION_DENIED)
        return b"OK\r\n"

    def cmd_help(self, line, literal, reply):
        return help_reply()

    def cmd_quit(self, line, literal, reply):
        self._pause_input("quit")
        reply.then = self._quit
        return b"OK BYE\r\n"

    def _quit(self):
        self._conn.close("quit")
        self._teardown()


COMMANDS = {
    "get": (READ, TextVerbs.cmd_get),
    "set": (WRITE, TextVerbs.cmd_set),
    "cas": (WRITE, TextVerbs.cmd_cas),
    "del": (WRITE, TextVerbs.cmd_del),
    "nop": (WRITE, TextVerbs.cmd_nop),
    "rev": (READ, TextVerbs.cmd_rev),
    "self": (READ, TextVerbs.cmd_self),
    "stat": (READ, TextVerbs.cmd_stat),
    "getdir": (READ, TextVerbs.cmd_getdir),
    "walk": (READ, TextVerbs.cmd_walk),
    "wait": (READ, TextVerbs.cmd_wait),
    "watch": (READ, TextVerbs.cmd_watch),
    "unwatch": (READ, TextVerbs.cmd_unwatch),
    "access": (OPEN, TextVerbs.cmd_access),
    "help": (OPEN, TextVerbs.cmd_help),
    "quit": (OPEN, TextVerbs.cmd_quit),
    "lease": (READ, TextVerbs.cmd_lease),
    "end": (OPEN, TextVerbs.cmd_end),
    "if": (OPEN, TextVerbs.cmd_txn_line),
    "then": (OPEN, TextVerbs.cmd_txn_line),
    "else": (OPEN, TextVerbs.cmd_txn_line),
    "ruok": (OPEN, TextVerbs.cmd_ruok),
    "isro": (READ, TextVerbs.cmd_isro),
    "srvr": (READ, TextVerbs.cmd_srvr),
    "mntr": (READ, TextVerbs.cmd_mntr),
    "cons": (READ, TextVerbs.cmd_cons),
}
"""``txn`` is not here: TextProtocol collects a whole block (``txn`` ... ``end``)
into a TxnBlock and answers it with ``run_txn``."""
