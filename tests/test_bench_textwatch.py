"""The benchmark's text-protocol watcher: the unit parser (pure) and the
TextWatcher protocol on a StringTransport, also against a real
TextProtocol connection to an in-memory Node."""

import struct

import pytest
from twisted.internet.testing import StringTransport

from doozertw import bench
from doozertw.benchmarks import doozer
from doozertw.benchmarks.textwatch import (
    Event, Reply, TextWatcher, UnitError, UnitParser, WatchEnded)
from doozertw.testing.frontends import Conn

SET = b"EVENT 1 set 7 /bench/watch/stamp 5\r\nhello\r\n"
STREAM = (b"OK WATCHING 1\r\n" + SET + b"EVENT 1 del 8 /bench/watch/stamp 0\r\n\r\n"
          b"EVENT 1 ERROR OTHER slow consumer\r\nERR OTHER no watch 2\r\nOK\r\n")
UNITS = [Reply(b"OK WATCHING 1"),
         Event(1, "set", 7, b"/bench/watch/stamp", b"hello"),
         Event(1, "del", 8, b"/bench/watch/stamp", b""),
         WatchEnded(1, "OTHER", "slow consumer"),
         Reply(b"ERR OTHER no watch 2"), Reply(b"OK")]


# -- UnitParser ------------------------------------------------------------------------


def test_parses_replies_events_and_ended_watches():
    assert UnitParser().feed(STREAM) == UNITS


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_any_split_of_the_stream_gives_the_same_units(size):
    parser = UnitParser()
    units = []
    for i in range(0, len(STREAM), size):
        units += parser.feed(STREAM[i:i + size])
    assert units == UNITS
    assert parser.buffered == 0


def test_a_partial_unit_waits_for_the_rest():
    parser = UnitParser()
    assert parser.feed(SET[:-3]) == []
    assert parser.buffered == len(b"hell")     # the header is read, the value waits
    assert parser.feed(SET[-3:]) == [Event(1, "set", 7, b"/bench/watch/stamp", b"hello")]


def test_a_value_is_binary_and_taken_by_its_length():
    value = b"a\r\nEVENT 2 x\n\x00\xff"
    data = b"EVENT 3 set 9 /a %d\r\n%s\r\n" % (len(value), value)
    assert UnitParser().feed(data) == [Event(3, "set", 9, b"/a", value)]


def test_a_path_may_hold_spaces_and_lines_may_end_in_lf_alone():
    assert UnitParser().feed(b"EVENT 1 set 2 /a b 1\nx\r\nOK\n") == [
        Event(1, "set", 2, b"/a b", b"x"), Reply(b"OK")]


@pytest.mark.parametrize("bad", [
    b"HELLO\r\n",                                   # not a unit
    b"OKAY\r\n",
    b"EVENT 1 set 2\r\n",                           # short
    b"EVENT x set 2 /a 1\r\nx\r\n",                 # bad id
    b"EVENT 1 put 2 /a 1\r\nx\r\n",                 # bad kind
    b"EVENT 1 set -2 /a 1\r\nx\r\n",                # bad revision
    b"EVENT 1 set 2 a 1\r\nx\r\n",                  # bad path
    b"EVENT 1 set 2 /a +1\r\nx\r\n",                # bad length
    b"EVENT 1 set 2 /a 1_0\r\nx\r\n",
    b"EVENT 1 set 2 /a 99999999999999999999\r\n",  # more than 19 digits
    b"EVENT 1 set 2 /a 1\r\nxy\r\n",               # value longer than said
])
def test_malformed_input_is_refused(bad):
    with pytest.raises(UnitError):
        UnitParser().feed(bad)


def test_after_an_error_the_parser_refuses_everything():
    parser = UnitParser()
    with pytest.raises(UnitError):
        parser.feed(b"junk\r\n")
    with pytest.raises(UnitError, match="stopped"):
        parser.feed(b"OK\r\n")
    assert parser.buffered == 0


def test_attack_an_endless_line_is_cut_at_max_line():
    parser = UnitParser(max_line=100)
    parser.feed(b"OK " + b"x" * 97)                 # 100 bytes: still a possible line
    assert parser.buffered == 100
    parser.feed(b"\r")
    with pytest.raises(UnitError, match="longer than 100"):
        parser.feed(b"y")                           # 101 bytes and no line end
    assert parser.buffered == 0


def test_a_line_of_max_line_bytes_is_read_one_more_is_refused():
    assert UnitParser(max_line=10).feed(b"OK " + b"x" * 7 + b"\r\n") == [
        Reply(b"OK " + b"x" * 7)]
    with pytest.raises(UnitError):
        UnitParser(max_line=10).feed(b"OK " + b"x" * 8 + b"\n")


def test_attack_a_huge_announced_value_is_refused_before_it_is_buffered():
    parser = UnitParser(max_value=1000)
    assert parser.feed(b"EVENT 1 set 2 /a 1000\r\n" + b"v" * 500) == []
    with pytest.raises(UnitError, match="1001 bytes"):
        UnitParser(max_value=1000).feed(b"EVENT 1 set 2 /a 1001\r\n")


def test_attack_a_stream_of_small_units_leaves_nothing_buffered():
    parser = UnitParser(max_line=64)
    units = parser.feed(SET * 10_000)
    assert len(units) == 10_000 and parser.buffered == 0


# -- TextWatcher -------------------------------------------------------------------------


def stamped(t):
    return struct.pack(">d", t) + b"-" * 8


def watcher(now=lambda: 10.0):
    stats = bench.Stats()
    proto = TextWatcher(b"/bench/watch/*", 42, now, stats)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, stats


def test_the_watcher_sends_one_watch_and_times_events_by_their_stamp():
    proto, transport, stats = watcher()
    assert transport.value() == b"watch /bench/watch/* 42\r\n"
    assert not proto.watching.called
    proto.dataReceived(b"OK WATCHING 1\r\n")
    assert proto.watching.result is True
    value = stamped(9.5)
    proto.dataReceived(b"EVENT 1 set 42 /bench/watch/stamp 16\r\n" + value + b"\r\nEVENT 1 s")
    proto.dataReceived(b"et 43 /bench/watch/stamp 16\r\n" + stamped(9.75) + b"\r\n")
    assert stats.latencies == [0.5, 0.25] and stats.errors == stats.lost == 0


def test_a_refused_watch_fires_false_and_counts_an_error():
    proto, _, stats = watcher()
    proto.dataReceived(b"ERR OTHER too many watches (max 64)\r\n")
    assert proto.watching.result is False and stats.errors == 1


def test_an_ended_watch_and_an_unstamped_value_are_errors():
    proto, _, stats = watcher()
    proto.dataReceived(b"OK WATCHING 1\r\nEVENT 1 del 5 /bench/watch/x 0\r\n\r\n"
                       b"EVENT 1 ERROR OTHER slow consumer\r\n")
    assert stats.errors == 2 and stats.latencies == []


def test_unreadable_input_drops_the_connection_as_an_error_not_a_loss():
    proto, transport, stats = watcher()
    proto.dataReceived(b"garbage\r\n")
    assert stats.errors == 1 and transport.disconnecting
    proto.connectionLost(None)
    assert stats.lost == 0 and proto.watching.result is False


def test_a_connection_lost_unasked_counts_as_lost():
    proto, _, stats = watcher()
    proto.connectionLost(None)
    assert stats.lost == 1 and proto.watching.result is False


def test_against_a_real_text_connection(node):
    """The watcher reads what TextProtocol writes: its bytes go to a Conn
    on an in-memory Node, the Conn's replies come back."""
    proto, transport, stats = watcher(now=lambda: 100.0)
    node.set("/bench/watch/stamp", -1, stamped(99.0))   # revision 1: replayed
    conn = Conn(node)
    conn.send(transport.value().replace(b" 42\r\n", b" 1\r\n"))
    node.set("/bench/other", -1, b"unwatched")
    node.set("/bench/watch/stamp", -1, stamped(99.5))
    proto.dataReceived(conn.raw())
    assert proto.watching.result is True
    assert stats.latencies == [1.0, 0.5] and stats.errors == 0


def test_watch_via_wait_switches_the_rows_and_their_label():
    from doozertw.benchmarks import cluster
    [stream] = cluster.suites(cluster.parse_args([]))
    assert stream.watch_api == "text protocol watch stream"
    assert stream.watch_worker.keywords == {"via": "stream"}
    [wait] = cluster.suites(cluster.parse_args(["--watch-via", "wait"]))
    assert wait.watch_api == "doozer protocol WAIT chains"
    assert wait.watch_worker.keywords == {"via": "wait"}
    assert wait.watch_worker.func is doozer.watch_worker
