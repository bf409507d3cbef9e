"""ZooKeeper's four-letter admin words on the text protocol: answered from the
node's own figures, at once, without a read barrier."""

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from doozertw import __version__
from doozertw.frontends.access import Secrets
from doozertw.frontends.text import HELP
from doozertw.node import Node
from doozertw.status import ClusterView, MemberStatus
from doozertw.store import Store
from doozertw.testing.frontends import Conn


@pytest.fixture
def conn(node, clock):
    return Conn(node, clock)


def lines(conn):
    out = conn.raw()
    assert out.endswith(b"\r\n") or out == b""
    return out.split(b"\r\n")[:-1]


def block(got, kind):
    """The n lines of an ``OK <kind> <n>`` reply at the start of ``got``."""
    ok, head, n = got[0].split()
    assert (ok, head) == (b"OK", kind)
    return got[1:1 + int(n)]


def fields(body, sep):
    return dict(line.split(sep, 1) for line in body)


def test_ruok_and_isro(conn):
    conn.send(b"ruok\nisro\nRUOK\nruok now\n")
    assert lines(conn) == [b"OK imok", b"OK rw", b"OK imok",
                           b"ERR OTHER too many arguments; usage: ruok"]


def test_rights_ruok_needs_none_the_others_need_read(node, clock):
    conn = Conn(node, clock, secrets=Secrets(rw=b"rw", ro=b"ro"))
    conn.send(b"ruok\nisro\nsrvr\nstat\nmntr\ncons\n")
    assert lines(conn) == [b"OK imok"] + [b"ERR OTHER permission denied"] * 5
    conn.send(b"access ro\nisro\nmntr\naccess rw\nisro\n")
    got = lines(conn)
    assert got[:2] == [b"OK", b"OK ro"]
    assert got[-2:] == [b"OK", b"OK rw"]


def test_srvr_describes_a_node_alone(conn, node):
    node.set("/a/b", -1, b"1")
    node.set("/c", -1, b"2")
    watch = node.watch("/**", 3, lambda e: None)
    conn.send(b"srvr\n")
    got = fields(block(lines(conn), b"SRVR"), b": ")
    assert got == {
        b"Doozer version": __version__.encode(), b"Node": b"test-node", b"Cluster": b"local",
        b"Mode": b"standalone", b"Leader": b"test-node", b"Revision": b"2", b"Files": b"2",
        b"Watchers": b"1", b"Connections": b"1", b"Reads": b"0", b"Writes": b"2",
        b"Write errors": b"0"}
    watch.cancel()


def test_mntr_is_tab_separated_doozer_keys(conn, node):
    node.set("/x", -1, b"1")
    conn.send(b"watch /**\nmntr\n")
    got = lines(conn)
    assert got[0] == b"OK WATCHING 1"
    body = block(got[1:], b"MNTR")
    assert all(line.count(b"\t") == 1 and line.startswith(b"doozer_") for line in body)
    values = fields(body, b"\t")
    assert values[b"doozer_version"] == __version__.encode()
    assert values[b"doozer_server_state"] == b"standalone"
    assert values[b"doozer_znode_count"] == b"1"
    assert values[b"doozer_watch_count"] == b"1"
    assert values[b"doozer_num_alive_connections"] == b"1"
    assert values[b"doozer_revision"] == b"1"


def test_cons_lists_this_nodes_text_connections(node, clock):
    first = Conn(node, clock)
    second = Conn(node, clock)
    second.proto.transport.peerAddr = IPv4Address("TCP", "10.0.0.9", 4242)
    other = Conn(Node(name="elsewhere"), clock)
    second.send(b"rev\nwatch /a\n")
    second.raw()
    first.send(b"cons\n")
    body = block(lines(first), b"CONS")
    assert body == [b"192.168.1.1:54321 proto=text recved=1 sent=0 watches=0 self=1",
                    b"10.0.0.9:4242 proto=text recved=2 sent=2 watches=1"]
    second.proto.connectionLost()
    first.send(b"cons\nstat\n")
    got = lines(first)
    assert block(got, b"CONS") == [
        b"192.168.1.1:54321 proto=text recved=2 sent=1 watches=0 self=1"]
    stats = block(got[2:], b"STATS")
    assert stats[-2:] == [b"Clients: 1",
                          b"192.168.1.1:54321 proto=text recved=3 sent=2 watches=0 self=1"]
    assert b"Mode: standalone" in stats and b"Connections: 1" in stats
    assert other.proto.node is not node


def test_stat_with_a_path_is_still_the_file_stat(conn, node):
    node.set("/f", -1, b"abc")
    conn.send(b"stat /f\nstat\n")
    got = lines(conn)
    assert got[0] == b"OK STAT 1 3"
    assert block(got[1:], b"STATS")[0] == b"Doozer version: " + __version__.encode()


class _NeverBarrier:
    """A read barrier that never completes (a node cut off from its quorum)."""

    def barrier(self):
        return defer.Deferred()


def test_admin_words_need_no_quorum_and_report_the_cluster_view(clock):
    view = ClusterView(name="prod", self_name="n2", leader="n1", term=7, has_quorum=False,
                       members=(MemberStatus("n1", "leader", 7, 9, True),
                                MemberStatus("n2", "follower", 7, 9, True)))
    node = Node(name="n2", store=Store(), cluster_name="prod", read_barrier=_NeverBarrier(),
                cluster_status=lambda: view)
    conn = Conn(node, clock)
    conn.send(b"rev\nget /a\n")
    assert conn.raw() == b""              # linearizable reads wait for the quorum
    other = Conn(node, clock)
    other.send(b"ruok\nsrvr\nmntr\n")
    got = lines(other)
    assert got[0] == b"OK imok"
    srvr = fields(block(got[1:], b"SRVR"), b": ")
    assert (srvr[b"Mode"], srvr[b"Leader"], srvr[b"Term"], srvr[b"Quorum"]) == (
        b"follower", b"n1", b"7", b"0")
    mntr = fields(block(got[2 + len(srvr):], b"MNTR"), b"\t")
    assert mntr[b"doozer_server_state"] == b"follower"
    assert mntr[b"doozer_cluster"] == b"prod"


def test_admin_words_are_in_help(conn):
    conn.send(b"help\n")
    listed = {usage.split()[0] for usage, _ in HELP}
    assert {"ruok", "isro", "srvr", "stat", "mntr", "cons", "lease", "txn"} <= listed
    assert len(block(lines(conn), b"HELP")) == len(HELP)


def test_an_unknown_peer_address_is_shown_as_a_question_mark(node, clock):
    conn = Conn(node, clock)

    class NoPeer(StringTransport):
        def getPeer(self):
            raise OSError("gone")

    conn.proto.transport = NoPeer()
    assert conn.proto.cmd_cons(b"cons", None, None).split(b"\r\n")[1].startswith(b"? ")
