"""The text protocol front end, driven through StringTransport and a Clock."""

import pytest
from twisted.internet import defer

from doozertw.frontends.access import Secrets
from doozertw.frontends.text import HELP, Framer, FramingError
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.frontends import Conn
from doozertw.testing.proposers import HeldProposer


@pytest.fixture
def conn(node, clock):
    return Conn(node, clock)


# -- basic use -----------------------------------------------------------------


def test_set_then_get_by_hand(conn, node):
    conn.send(b"set /message hello, world\r\n")
    assert conn.raw() == b"OK REV 1\r\n"
    conn.send(b"get /message\n")
    assert conn.raw() == b"OK VALUE 1 12\r\nhello, world\r\n"
    assert node.store.get("/message") == (b"hello, world", 1)


def test_verbs_are_case_insensitive_and_blank_lines_ignored(conn):
    conn.send(b"\r\n   \nSET /a x\nGeT /a\n\n")
    assert conn.units() == [([b"OK", b"REV", b"1"], None),
                            ([b"OK", b"VALUE", b"1", b"1"], b"x")]


def test_value_keeps_spaces_after_the_first(conn):
    conn.send(b"set /a  two  spaces \r\nset /b \r\nget /a\nget /b\n")
    units = conn.units()
    assert units[2][1] == b" two  spaces "
    assert units[3] == ([b"OK", b"VALUE", b"2", b"0"], b"")


def test_get_missing_file_and_past_revision(conn):
    conn.send(b"get /nope\nset /a one\nset /a two\nget /a 1\nget /a 0\n")
    units = conn.units()
    assert units[0] == ([b"OK", b"VALUE", b"0", b"0"], b"")
    assert units[3] == ([b"OK", b"VALUE", b"1", b"3"], b"one")
    assert units[4] == ([b"OK", b"VALUE", b"0", b"0"], b"")


def test_get_errors(conn, node):
    conn.send(b"set /d/f x\nget\nget /d\nget bad\nget /a x\nget /a -1\nget /a 1 2\n"
              b"get /\xff\n")
    assert conn.lines()[1:] == [
        b"ERR MISSING_ARG usage: get PATH [REV]",
        b"ERR ISDIR /d",
        b"ERR BAD_PATH 'bad'",
        b"ERR OTHER bad revision",
        b"ERR OTHER bad revision",
        b"ERR OTHER too many arguments; usage: get PATH [REV]",
        b"ERR BAD_PATH /\\xff",
    ]
    assert node.store.rev == 1


def test_get_at_future_revision_waits_for_it(conn, node):
    conn.send(b"get /a 2\nrev\n")
    assert conn.raw() == b""
    node.set("/a", -1, b"1")
    assert conn.raw() == b""
    node.set("/a", -1, b"2")
    # rev ran when it was read (revision 0); only its answer waited its turn
    assert conn.lines() == [b"OK VALUE 2 1", b"OK REV 0"]


def test_cas_revision_semantics(conn, node):
    conn.send(b"cas /a 0 first\ncas /a 0 again\ncas /a 1 second\ncas /a 1 stale\n"
              b"cas /a -1 clobber\ncas /a x v\ncas /a -2 v\ncas /a 3\ncas /a\ncas\n")
    assert conn.lines() == [
        b"OK REV 1", b"ERR REV_MISMATCH", b"OK REV 2", b"ERR REV_MISMATCH",
        b"OK REV 3", b"ERR OTHER bad revision", b"ERR OTHER bad revision",
        b"ERR MISSING_ARG no value", b"ERR MISSING_ARG no value",
        b"ERR MISSING_ARG no value",
    ]
    assert node.store.get("/a") == (b"clobber", 3)


def test_set_errors_leave_the_store_alone(conn, node):
    conn.send(b"set /f x\nset /f/g y\nset / z\nset bad v\nset\nset /only\n")
    assert conn.lines() == [
        b"OK REV 1", b"ERR NOTDIR", b"ERR ISDIR", b"ERR BAD_PATH 'bad'",
        b"ERR MISSING_ARG no value", b"ERR MISSING_ARG no value",
    ]
    assert node.store.rev == 1


def test_del(conn, node):
    conn.send(b"set /a x\nset /b y\ndel /a\ndel /b 1\ndel /b 2\ndel\ndel /b zz\nget /a\n")
    assert conn.lines() == [
        b"OK REV 1", b"OK REV 2", b"OK REV 3", b"ERR REV_MISMATCH", b"OK REV 4",
        b"ERR MISSING_ARG usage: del PATH [REV]", b"ERR OTHER bad revision",
        b"OK VALUE 0 0",
    ]
    assert node.store.file_count == 0


def test_rev_nop_self_help(conn):
    conn.send(b"rev\nnop\nself\nhelp\nrev now\n")
    units = conn.units()
    assert [w for w, _ in units[:3]] == [[b"OK", b"REV", b"0"], [b"OK"],
                                         [b"OK", b"SELF", b"test-node"]]
    assert units[3][0] == [b"OK", b"HELP", b"%d" % len(HELP)]
    assert units[3][1][0].startswith(b"get PATH [REV]")
    assert {line.split()[0] for line in units[3][1]} >= {
        b"get", b"set", b"cas", b"del", b"watch", b"unwatch", b"access", b"quit"}
    assert units[4][0][:3] == [b"ERR", b"OTHER", b"too"]


def test_unknown_verb(conn):
    conn.send(b"frob /a\n\x00\x01 x\n")
    assert conn.lines() == [b"ERR UNKNOWN_VERB frob", b"ERR UNKNOWN_VERB \\x00\\x01"]


def test_stat(conn):
    conn.send(b"set /d/a xyz\nset /d/b q\nstat /d/a\nstat /d\nstat /\nstat /no\nstat /d/a 0\n"
              b"stat\n")
    assert conn.lines()[2:-1] == [
        b"OK STAT 1 3", b"OK STAT -2 2", b"OK STAT -2 1", b"OK STAT 0 0", b"OK STAT 0 0",
    ]
    conn.send(b"stat\n")         # no PATH: ZooKeeper's admin word (tests/test_text_admin.py)
    assert conn.units()[0][0][:2] == [b"OK", b"STATS"]


def test_getdir_lists_all_or_one(conn):
    conn.send(b"getdir /\nset /d/b 1\nset /d/a/x 2\nset /d/c 3\ngetdir /d\ngetdir /d 2\n"
              b"getdir /d 3 1\ngetdir /d 3 5\ngetdir /d/b\ngetdir /none\ngetdir / 3\n")
    units = conn.units()
    assert units[0] == ([b"OK", b"DIR", b"0", b"0"], [])
    assert units[4] == ([b"OK", b"DIR", b"3", b"3"], [b"a", b"b", b"c"])
    assert units[5] == ([b"OK", b"DIR", b"2", b"2"], [b"a", b"b"])
    assert units[6] == ([b"OK", b"DIR", b"3", b"1"], [b"b"])
    assert [b" ".join(w) for w, _ in units[7:]] == [
        b"ERR RANGE offset 5", b"ERR NOTDIR /d/b", b"ERR NOENT /none", b"OK DIR 3 1"]


def test_walk(conn):
    conn.send(b"walk /**\nset /a/x 1\nset /a/y 22\nset /b 3\nwalk /a/*\nwalk /** 2\n"
              b"walk /** 3 2\nwalk /** 3 9\nwalk bad\nwalk\n")
    units = conn.units()
    assert units[0] == ([b"OK", b"WALK", b"0", b"0"], [])
    assert units[4] == ([b"OK", b"WALK", b"3", b"2"], [
        ([b"FILE", b"1", b"/a/x", b"1"], b"1"), ([b"FILE", b"2", b"/a/y", b"2"], b"22")])
    assert len(units[5][1]) == 2
    assert units[6][1] == [([b"FILE", b"3", b"/b", b"1"], b"3")]
    assert [w[:2] for w, _ in units[7:]] == [
        [b"ERR", b"RANGE"], [b"ERR", b"BAD_PATH"], [b"ERR", b"MISSING_ARG"]]


# -- binary values ----------------------------------------------------------------


BINARY = bytes(range(256)) + b"\r\n\r\n\x00\n\r"


def test_binary_literal_round_trips(conn, node):
    conn.send(b"set /bin {%d}\r\n" % len(BINARY) + BINARY + b"\r\nget /bin\n")
    units = conn.units()
    assert units == [([b"OK", b"REV", b"1"], None),
                     ([b"OK", b"VALUE", b"1", b"%d" % len(BINARY)], BINARY)]
    assert node.store.get("/bin")[0] == BINARY


def test_literal_line_end_is_optional_and_cas_takes_one(conn, node):
    conn.send(b"set /a {3}\nA\nBget /a\ncas /a 1 {2}\r\n\r\ncas /a 0 {0}\n")
    units = conn.units()
    assert units[1] == ([b"OK", b"VALUE", b"1", b"3"], b"A\nB")
    assert units[2][0] == [b"OK", b"REV", b"2"]
    assert node.store.get("/a")[0] == b"\r\n"
    assert units[3][0] == [b"ERR", b"REV_MISMATCH"]


def test_value_that_merely_looks_like_a_literal_is_text(conn, node):
    conn.send(b"set /a x {3}\nset /b {x}\n")
    assert conn.lines() == [b"OK REV 1", b"OK REV 2"]
    assert node.store.get("/a")[0] == b"x {3}"
    assert node.store.get("/b")[0] == b"{x}"


def test_oversize_literal_is_skipped(node):
    conn = Conn(node, limits=Limits(max_value=10))
    junk = b"set /a 1\nget /a\n" + b"z" * 4
    conn.send(b"set /a {20}\r\n" + junk[:7])
    conn.send(junk[7:] + b"\r\nset /b {10}\r\n0123456789\r\nget /a\n")
    assert conn.lines() == [b"ERR OTHER value too large (20 > 10)", b"OK REV 1",
                            b"OK VALUE 0 0"]
    assert node.store.get("/b") == (b"0123456789", 1)
    assert not conn.closed


def test_inline_value_over_limit(node):
    conn = Conn(node, limits=Limits(max_value=4))
    conn.send(b"set /a 12345\nset /a 1234\n")
    assert conn.lines() == [b"ERR OTHER value too large", b"OK REV 1"]


def test_absurd_literal_length_closes(conn, node):
    conn.send(b"set /a {%s}\r\n" % (b"9" * 20))
    assert conn.raw() == b"ERR OTHER literal length too long\r\n"
    assert conn.closed


# -- pipelining ------------------------------------------------------------------------


SCRIPT = b"".join(
    b"set /p/%d v%d\r\nget /p/%d\nstat /p\n" % (i, i, i) for i in range(60)
) + b"set /bin {5}\r\n\r\n\x00\n\r\nwalk /p/1*\ngetdir /p 10\nbogus\nrev\n"


def test_pipelined_in_one_piece(node):
    conn = Conn(node)
    conn.send(SCRIPT)
    units = conn.units()
    assert len(units) == 60 * 3 + 5
    for i in range(60):
        assert units[3 * i][0] == [b"OK", b"REV", b"%d" % (i + 1)]
        assert units[3 * i + 1] == ([b"OK", b"VALUE", b"%d" % (i + 1), b"%d" % len(b"v%d" % i)],
                                    b"v%d" % i)
        assert units[3 * i + 2][0] == [b"OK", b"STAT", b"-2", b"%d" % (i + 1)]
    assert units[-1][0] == [b"OK", b"REV", b"61"]


def test_byte_by_byte_gives_the_same_bytes():
    whole, dribble = Conn(Node(store=Store())), Conn(Node(store=Store()))
    whole.send(SCRIPT)
    for i in range(len(SCRIPT)):
        dribble.send(SCRIPT[i:i + 1])
    assert dribble.raw() == whole.raw()


def test_pipelined_read_sees_own_earlier_write():
    store = Store()
    proposer = HeldProposer(store)
    conn = Conn(Node(store=store, proposer=proposer))
    conn.send(b"set /a 1\nset /a 2\nget /a\nrev\n")
    assert conn.raw() == b""
    assert len(proposer.held) == 2
    proposer.release_all()
    assert conn.lines() == [b"OK REV 1", b"OK REV 2", b"OK VALUE 2 1", b"OK REV 2"]


def test_read_waits_only_for_the_writes_sent_before_it():
    store = Store()
    proposer = HeldProposer(store)
    conn = Conn(Node(store=store, proposer=proposer))
    conn.send(b"set /a 1\nget /a\nset /a 2\nstat /a\n")
    proposer.release(1)
    assert conn.lines() == [b"OK REV 1", b"OK VALUE 1 1"]
    proposer.release_all()
    assert conn.lines() == [b"OK REV 2", b"OK STAT 2 1"]


# -- wait -------------------------------------------------------------------------------


def test_wait_holds_later_replies_in_order(conn, node):
    conn.send(b"wait /x/*\nset /other 1\nget /other\n")
    assert conn.raw() == b""
    assert node.store.get("/other")[0] == b"1"   # executed, answer held
    node.set("/x/y", -1, b"fired")
    assert conn.units() == [
        ([b"OK", b"EVENT", b"set", b"2", b"/x/y", b"5"], b"fired"),
        ([b"OK", b"REV", b"1"], None),
        ([b"OK", b"VALUE", b"1", b"1"], b"1"),
    ]
    assert node.store.watch_count == 0


def test_wait_from_past_revision_and_delete(conn, node):
    node.set("/a", -1, b"x")
    node.delete("/a", -1)
    conn.send(b"wait /a 2\nwait /a 1\nwait /** 99999999999999999999\nwait bad\nwait\n")
    assert conn.lines() == [
        b"OK EVENT del 2 /a 0", b"OK EVENT set 1 /a 1", b"ERR OTHER bad revision",
        b"ERR BAD_PATH bad glob 'bad'", b"ERR MISSING_ARG usage: wait GLOB [REV]"]


def test_too_late(conn, node):
    for i in range(150):
        node.set("/f", -1, b"%d" % i)
    conn.send(b"wait /f 3\nwatch /f 3\nget /f 3\nwalk /** 3\ngetdir / 3\n")
    assert [w[:2] for w, _ in conn.units()] == [[b"ERR", b"TOO_LATE"]] * 5
    assert node.store.watch_count == 0


# -- watch ------------------------------------------------------------------------------


def test_watch_streams_and_unwatch(conn, node):
    conn.send(b"watch /w/**\n")
    assert conn.raw() == b"OK WATCHING 1\r\n"
    node.set("/w/a", -1, b"one\r\ntwo")
    node.set("/elsewhere", -1, b"no")
    node.delete("/w/a", -1)
    assert conn.units() == [
        ([b"EVENT", b"1", b"set", b"1", b"/w/a", b"8"], b"one\r\ntwo"),
        ([b"EVENT", b"1", b"del", b"3", b"/w/a", b"0"], b""),
    ]
    conn.send(b"unwatch 1\nunwatch 1\nunwatch x\nunwatch\n")
    assert conn.lines() == [b"OK", b"ERR OTHER no watch 1", b"ERR OTHER bad watch id",
                            b"ERR MISSING_ARG usage: unwatch ID"]
    node.set("/w/b", -1, b"late")
    assert conn.raw() == b""
    assert node.store.watch_count == 0


def test_watch_replays_from_past_revision_after_its_ok(conn, node):
    node.set("/a", -1, b"1")
    node.set("/b", -1, b"2")
    node.set("/a", -1, b"3")
    conn.send(b"watch /a 1\n")
    assert conn.units() == [
        ([b"OK", b"WATCHING", b"1"], None),
        ([b"EVENT", b"1", b"set", b"1", b"/a", b"1"], b"1"),
        ([b"EVENT", b"1", b"set", b"3", b"/a", b"1"], b"3"),
    ]


def test_watch_announced_after_held_replies(conn, node):
    node.set("/a", -1, b"old")
    conn.send(b"wait /gate\nwatch /a 1\n")
    node.set("/a", -1, b"new")
    assert conn.raw() == b""
    node.set("/gate", -1, b"")
    assert conn.lines() == [b"OK EVENT set 3 /gate 0", b"OK WATCHING 1",
                            b"EVENT 1 set 1 /a 3", b"EVENT 1 set 2 /a 3"]


def test_watch_limit(node):
    conn = Conn(node, limits=Limits(max_watches=2))
    conn.send(b"watch /a\nwatch /b\nwatch /c\nunwatch 1\nwatch /c\n")
    assert conn.lines() == [b"OK WATCHING 1", b"OK WATCHING 2",
                            b"ERR OTHER too many watches (max 2)", b"OK", b"OK WATCHING 3"]
    assert node.store.watch_count == 2


def test_slow_consumer_loses_its_watches(node):
    conn = Conn(node, limits=Limits(max_output_buffer=250))
    assert conn.transport.producer is conn.proto
    conn.send(b"watch /**\nwatch /a\n")
    conn.raw()
    conn.proto.pauseProducing()               # the transport's buffer is full
    assert conn.transport.producerState == "paused"
    conn.send(b"rev\n")                       # not read while paused
    for _ in range(5):
        node.set("/a", -1, b"x" * 30)
    out = conn.raw()
    assert out.endswith(b"EVENT 1 ERROR OTHER slow consumer\r\n"
                        b"EVENT 2 ERROR OTHER slow consumer\r\n")
    assert out.count(b"EVENT 1 set") == 2 and out.count(b"EVENT 2 set") == 3
    assert node.store.watch_count == 0
    conn.proto.resumeProducing()
    assert conn.transport.producerState == "producing"
    conn.clock.advance(0)
    assert conn.lines() == [b"OK REV 5"]


def test_slow_consumer_while_watch_reply_is_held(node):
    conn = Conn(node, limits=Limits(max_output_buffer=200))
    for _ in range(10):
        node.set("/a", -1, b"y" * 50)
    conn.send(b"wait /gate\nwatch /a 1\n")
    assert node.store.watch_count == 1        # only the wait; the watch gave up
    node.set("/gate", -1, b"")
    assert conn.lines() == [b"OK EVENT set 11 /gate 0", b"OK WATCHING 1",
                            b"EVENT 1 ERROR OTHER slow consumer"]


# -- limits and framing -------------------------------------------------------------------


def test_in_flight_limit_pauses_reading(node):
    conn = Conn(node, limits=Limits(max_in_flight=2))
    conn.send(b"wait /x\nwait /y\nset /z 1\n")
    assert conn.transport.producerState == "paused"
    assert node.store.get("/z") == (b"", 0)   # third command not read yet
    node.set("/x", -1, b"")
    assert node.store.get("/z") == (b"", 0)   # not run inside the other write ...
    conn.clock.advance(0)
    assert node.store.get("/z")[0] == b"1"    # ... but right after it
    assert conn.lines() == [b"OK EVENT set 1 /x 0"]
    assert conn.transport.producerState == "paused"   # wait /y and set /z unanswered
    node.set("/y", -1, b"")
    assert conn.lines() == [b"OK EVENT set 3 /y 0", b"OK REV 2"]
    assert conn.transport.producerState == "producing"


class ImmediateProposer:
    """Applies every write at once, even from inside another apply."""

    def __init__(self, store):
        self.store = store

    def propose(self, mutation):
        return defer.succeed(self.store.apply(mutation))


def test_resumed_commands_never_run_inside_another_write(clock):
    store = Store()
    node = Node(store=store, proposer=ImmediateProposer(store))
    watcher = Conn(node, clock)
    watcher.send(b"watch /**\n")
    paused = Conn(node, clock, limits=Limits(max_in_flight=1))
    paused.send(b"wait /x\nset /y 1\n")
    node.set("/x", -1, b"")
    clock.advance(0)
    assert paused.lines() == [b"OK EVENT set 1 /x 0", b"OK REV 2"]
    assert [w[3] for w, _ in watcher.units()[1:]] == [b"1", b"2"]   # revision order


def test_line_too_long_closes(node):
    conn = Conn(node, limits=Limits(max_line=16))
    conn.send(b"get /abc\n" + b"set /a " + b"x" * 11)
    assert conn.raw() == b"OK VALUE 0 0\r\n\r\nERR OTHER line too long\r\n"
    assert conn.closed
    conn.send(b"\nget /a\n")
    assert conn.raw() == b""
    assert node.store.rev == 0


def test_long_line_with_newline_also_closes(node):
    conn = Conn(node, limits=Limits(max_line=16))
    conn.send(b"set /a " + b"x" * 20 + b"\nrev\n")
    assert conn.raw() == b"ERR OTHER line too long\r\n"
    assert conn.closed


def test_path_limit(node):
    conn = Conn(node, limits=Limits(max_path=8))
    conn.send(b"set /abcdefg x\nset /abcdefgh x\nget /abcdefgh\nwatch /abcdefgh\n")
    assert conn.lines() == [b"OK REV 1", b"ERR BAD_PATH path too long",
                            b"ERR BAD_PATH path too long", b"ERR BAD_PATH path too long"]


def test_partial_request_times_out(conn, clock):
    conn.send(b"rev\nget /a")
    assert conn.raw() == b"OK REV 0\r\n"
    clock.advance(29)
    conn.send(b" 0")                           # bytes, but no complete request
    clock.advance(1.5)
    assert conn.raw() == b"ERR OTHER request timeout\r\n"
    assert conn.closed


def test_progress_restarts_the_timeout(conn, clock):
    conn.send(b"get /a")
    clock.advance(20)
    conn.send(b"\nset /b {4}\r\nab")
    clock.advance(20)
    conn.send(b"cd\r\n")
    clock.advance(100)
    assert not conn.closed
    assert conn.lines() == [b"OK VALUE 0 0", b"OK REV 1"]
    assert clock.getDelayedCalls() == []


def test_idle_connection_does_not_time_out(conn, clock):
    conn.send(b"watch /**\n")
    clock.advance(3600)
    assert not conn.closed


def test_quit_answers_then_closes(conn, node):
    conn.send(b"set /a 1\nquit\nset /a 2\n")
    assert conn.lines() == [b"OK REV 1", b"OK BYE"]
    assert conn.closed
    assert node.store.rev == 1


# -- secrets ------------------------------------------------------------------------------


def test_secrets_gate_everything_but_access_help_quit(node):
    conn = Conn(node, secrets=Secrets(rw=b"rw secret", ro=b"ro"))
    conn.send(b"get /a\nset /a 1\nwatch /**\nrev\nhelp\naccess wrong\naccess\n")
    lines = conn.lines()
    assert lines[:4] == [b"ERR OTHER permission denied"] * 4
    assert lines[4].startswith(b"OK HELP")
    assert lines[5:] == [b"ERR OTHER permission denied",
                         b"ERR MISSING_ARG usage: access SECRET"]
    conn.send(b"access ro\nget /a\nset /a 1\nnop\naccess rw secret\nset /a 1\n")
    assert conn.lines() == [b"OK", b"OK VALUE 0 0", b"ERR OTHER permission denied",
                            b"ERR OTHER permission denied", b"OK", b"OK REV 1"]
    assert node.store.rev == 1


# -- cleanup and robustness ---------------------------------------------------------------------


def test_connection_lost_cancels_everything(conn, node):
    conn.send(b"wait /x\nwatch /**\nwatch /y\nget /a 5\n")
    assert node.store.watch_count == 3
    conn.proto.connectionLost(None)
    assert node.store.watch_count == 0
    for _ in range(6):
        node.set("/x", -1, b"after")
    assert conn.raw() == b""
    assert node.stats.connections == 0


def test_connection_lost_with_writes_in_flight():
    store = Store()
    proposer = HeldProposer(store)
    conn = Conn(Node(store=store, proposer=proposer))
    conn.send(b"set /a 1\nwatch /a\nget /a\n")
    conn.proto.connectionLost(None)
    proposer.release_all()
    assert store.get("/a")[0] == b"1"
    assert store.watch_count == 0
    assert conn.raw() == b""


class BrokenNode(Node):
    def stat(self, path, rev=None):
        raise RuntimeError("bug")


def test_internal_error_is_an_error_reply(clock):
    conn = Conn(BrokenNode(store=Store()), clock)
    conn.send(b"stat /a\nrev\n")
    assert conn.lines() == [b"ERR OTHER internal error", b"OK REV 0"]


def test_framer_alone():
    framer = Framer(max_line=10, max_value=5)
    framer.feed(b"set /a {3}\r")
    assert framer.next() is None and framer.partial
    framer.feed(b"\nxyz")
    command = framer.next()
    assert (command.line, command.literal) == (b"set /a {3}", b"xyz")
    assert framer.next() is None and not framer.partial
    framer.feed(b"0123456789ab")
    with pytest.raises(FramingError):
        framer.next()
