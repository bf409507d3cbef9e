"""The text protocol's lease verbs, ``set lease=ID`` and ``txn`` blocks,
against a real Node on a Clock (StringTransport connections), including
hostile input: malformed ids, huge TTLs, oversized or unterminated blocks."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from doozertw.frontends.access import Secrets
from doozertw.frontends.text.txn import TxnBlock
from doozertw.limits import Limits
from doozertw.node import Node
from doozertw.store import Store
from doozertw.testing.frontends import Conn


@pytest.fixture
def lnode(clock):
    return Node(name="test-node", store=Store(history=100), reactor=clock)


@pytest.fixture
def conn(lnode, clock):
    return Conn(lnode, clock)


def lines(conn):
    """The reply stream as lines (these tests store no value holding CRLF)."""
    out = conn.raw()
    assert out.endswith(b"\r\n") or out == b""
    return out.split(b"\r\n")[:-1]


# -- leases --------------------------------------------------------------------------------


def test_grant_set_with_lease_ttl_revoke_deletes_the_files(conn, lnode):
    conn.send(b"lease grant 30\n")
    (granted,) = lines(conn)
    ok, kind, lease, ttl = granted.split()
    assert (ok, kind, int(ttl)) == (b"OK", b"LEASE", 30)
    conn.send(b"set lease=%s /svc/a up\ncas lease=%s /svc/b 0 {3}\r\nb\r\n\nset /plain x\n"
              % (lease, lease))
    assert [w.split()[:2] for w in lines(conn)] == [[b"OK", b"REV"]] * 3
    assert lnode.lease_of("/svc/a") == int(lease) == lnode.lease_of("/svc/b")
    assert lnode.store.get("/svc/b")[0] == b"b\r\n"
    conn.send(b"lease ttl %s\n" % lease)
    assert lines(conn) == [b"OK TTL %s 30 30 2" % lease, b"/svc/a", b"/svc/b"]
    conn.send(b"lease revoke %s\nget /svc/a\nget /svc/b\nget /plain\nlease ttl %s\n"
              % (lease, lease))
    got = lines(conn)
    assert got[0].startswith(b"OK REV ")
    assert int(got[0].split()[2]) == lnode.store.rev
    assert got[1:] == [b"OK VALUE 0 0", b"", b"OK VALUE 0 0", b"",
                       got[5], b"x", b"ERR NOENT lease %s does not exist" % lease]
    assert lnode.store.file_count == 1


def test_grant_with_id_keepalive_list_and_unknown_leases(conn, lnode, clock):
    conn.send(b"lease grant 10 7\nlease grant 20 7\nlease grant 60 9\n")
    assert lines(conn) == [b"OK LEASE 7 10", b"ERR REV_MISMATCH", b"OK LEASE 9 60"]
    clock.advance(4)
    conn.send(b"lease list\nlease keepalive 7\nlease ttl 7\n")
    assert lines(conn) == [b"OK LEASES 2", b"7 10 6", b"9 60 56",
                           b"OK LEASE 7 10", b"OK TTL 7 10 10 0"]
    conn.send(b"lease keepalive 8\nlease revoke 8\nset lease=8 /a x\nlease ttl 8\n")
    assert [w.split()[:2] for w in lines(conn)] == [[b"ERR", b"NOENT"]] * 4
    assert lnode.store.file_count == 0


def test_a_lease_that_expires_takes_its_files(conn, lnode, clock):
    conn.send(b"lease grant 5 3\nset lease=3 /eph x\n")
    assert lines(conn)[0] == b"OK LEASE 3 5"
    clock.advance(3)
    conn.send(b"lease keepalive 3\n")
    assert lines(conn) == [b"OK LEASE 3 5"]
    clock.advance(4)
    assert lnode.store.get("/eph")[0] == b"x"
    clock.advance(2)
    conn.send(b"get /eph\nlease ttl 3\nlease list\n")
    assert lines(conn) == [b"OK VALUE 0 0", b"", b"ERR NOENT lease 3 does not exist",
                           b"OK LEASES 0"]


def test_pipelined_grant_then_set_then_read_sees_the_lease(conn):
    conn.send(b"lease grant 10 4\nset lease=4 /a 1\nlease ttl 4\nlease list\n")
    got = lines(conn)
    assert got[0] == b"OK LEASE 4 10"
    assert got[2:] == [b"OK TTL 4 10 10 1", b"/a", b"OK LEASES 1", b"4 10 10"]


def test_malformed_lease_arguments_are_errors_and_change_nothing(conn, lnode):
    rev = lnode.store.rev
    conn.send(b"lease\nlease frob\nlease grant\nlease grant x\nlease grant 0\n"
              b"lease grant -5\nlease grant 99999999999999999999999\n"
              b"lease grant 9223372036854775807\nlease grant 10 0\nlease grant 10 x\n"
              b"lease grant 10 1 2\nlease keepalive\nlease keepalive -1\n"
              b"lease revoke 1.5\nlease ttl \xff\xfe\nlease list all\n"
              b"set lease= /a x\nset lease=abc /a x\nset lease=-1 /a x\n"
              b"cas lease=1 /a\nset lease=1\n")
    assert lines(conn) == [
        b"ERR MISSING_ARG usage: lease grant|keepalive|revoke|ttl|list ...",
        b"ERR OTHER usage: lease grant|keepalive|revoke|ttl|list ...",
        b"ERR MISSING_ARG usage: lease grant TTL [ID]",
        b"ERR OTHER bad ttl", b"ERR OTHER bad ttl", b"ERR OTHER bad ttl",
        b"ERR OTHER bad ttl",
        b"ERR RANGE ttl over max_lease_ttl %d" % Limits().max_lease_ttl,
        b"ERR OTHER bad lease id", b"ERR OTHER bad lease id",
        b"ERR OTHER too many arguments; usage: lease grant TTL [ID]",
        b"ERR MISSING_ARG usage: lease keepalive ID",
        b"ERR OTHER bad lease id", b"ERR OTHER bad lease id", b"ERR OTHER bad lease id",
        b"ERR OTHER too many arguments; usage: lease list",
        b"ERR OTHER bad lease id", b"ERR OTHER bad lease id", b"ERR OTHER bad lease id",
        b"ERR MISSING_ARG no value", b"ERR MISSING_ARG no value",
    ]
    assert lnode.store.rev == rev and len(lnode.store.leases) == 0
    assert not conn.closed


# -- transactions ------------------------------------------------------------------------


def test_txn_runs_the_success_branch_then_the_failure_branch(conn, lnode):
    block = (b"txn\nif /lock rev 0\nthen set /lock me\nthen set /owner {4}\r\nn\r\n1\r\n\n"
             b"then del /gone\nelse set /lost yes\nend\n")
    conn.send(block)
    assert lines(conn) == [b"OK TXN true 2 3", b"1 set /lock", b"2 set /owner", b"0 del /gone"]
    assert lnode.store.get("/owner") == (b"n\r\n1", 2)
    conn.send(block)
    assert lines(conn) == [b"OK TXN false 3 1", b"3 set /lost"]
    conn.send(b"TXN\nIF /lock VALUE me\nTHEN del /lock\nthen cas /owner 2 new owner\nEND\n"
              b"txn\nif /owner value {9}\r\nnew owner\r\nelse set /x 1\nend\n")
    assert lines(conn) == [b"OK TXN true 5 2", b"4 del /lock", b"5 set /owner",
                           b"OK TXN true 5 0"]


def test_txn_with_a_lease_and_its_revoke(conn, lnode):
    conn.send(b"lease grant 30 2\ntxn\nthen set lease=2 /e/a 1\nthen cas lease=2 /e/b 0 2\n"
              b"end\nlease ttl 2\nlease revoke 2\n")
    got = lines(conn)
    assert got[1:7] == [b"OK TXN true 2 2", b"1 set /e/a", b"2 set /e/b",
                        b"OK TTL 2 30 30 2", b"/e/a", b"/e/b"]
    assert lnode.store.file_count == 0


def test_a_txn_that_fails_validation_changes_nothing(conn, lnode):
    conn.send(b"set /f x\n")
    lines(conn)
    rev = lnode.store.rev
    conn.send(b"txn\nthen set /ok 1\nthen set /f/under y\nend\n"          # NOTDIR
              b"txn\nthen set /a 1\nthen set /a/b 2\nend\n"                 # nested paths
              b"txn\nif /f rev 1\nthen cas /f 0 y\nend\n"                   # REV_MISMATCH
              b"txn\nthen set lease=5 /g 1\nend\n"                         # no such lease
              b"txn\nthen set bad 1\nthen set /ok 2\nend\n"                 # bad path
              b"txn\nif /f rev x\nend\n"
              b"txn\nif /f size 3\nend\n"
              b"txn\nthen get /f\nend\n"
              b"txn\nthen set /a 1\nif /f rev 1\nend\n"
              b"txn\nset /a 1\nend\n"
              b"txn now\nend\n"
              b"txn\nthen set /a 1\nend please\n"
              b"get /ok\n")
    assert lines(conn) == [
        b"ERR NOTDIR", b"ERR BAD_PATH", b"ERR REV_MISMATCH", b"ERR NOENT",
        b"ERR BAD_PATH line 2: 'bad'",
        b"ERR OTHER line 2: bad revision",
        b"ERR MISSING_ARG line 2: usage: if PATH rev REV | if PATH value VALUE",
        b"ERR MISSING_ARG line 2: usage: then|else set|cas|del ...",
        b"ERR OTHER line 3: if after then/else",
        b"ERR OTHER line 2: expected if, then, else or end; usage: txn, then lines: "
        b"if PATH rev REV | if PATH value VALUE | then WRITE | else WRITE; end",
        b"ERR OTHER line 1: too many arguments; usage: txn, then lines: "
        b"if PATH rev REV | if PATH value VALUE | then WRITE | else WRITE; end",
        b"ERR OTHER line 3: too many arguments; usage: end",
        b"OK VALUE 0 0", b"",
    ]
    assert lnode.store.rev == rev


def test_txn_words_outside_a_block(conn):
    conn.send(b"end\nif /a rev 0\nthen set /a 1\nelse del /a\n")
    got = lines(conn)
    assert got[0] == b"ERR OTHER end without txn"
    assert all(line.startswith(b"ERR OTHER") and b"outside a txn block" in line
               for line in got[1:]) and len(got) == 4


def test_too_many_txn_lines_are_refused_and_not_kept(lnode, clock):
    conn = Conn(lnode, clock, limits=Limits(max_txn_ops=4))
    conn.send(b"txn\nif /x rev 0\n" + b"then set /a 1\n" * 3)
    assert conn.raw() == b""
    conn.send(b"then set /b 2\n" * 10_000)
    block = conn.proto._block
    assert block.error is not None and block.success == [] and block.compares == []
    conn.send(b"end\nrev\n")
    assert lines(conn) == [b"ERR OTHER line 6: too many txn lines (max_txn_ops 4)",
                           b"OK REV 0"]
    assert conn.proto._block is None and lnode.store.rev == 0


def test_a_txn_over_max_txn_bytes_is_refused(lnode, clock):
    conn = Conn(lnode, clock, limits=Limits(max_txn_bytes=100, max_value=64))
    conn.send(b"txn\nthen set /a " + b"x" * 60 + b"\nthen set /b " + b"y" * 60 + b"\n"
              b"then set /c {100}\r\n" + b"z" * 100 + b"\r\nend\nrev\n")
    assert lines(conn) == [b"ERR OTHER line 3: txn too large (max_txn_bytes 100)", b"OK REV 0"]
    conn.send(b"txn\nthen set /c {100}\r\n" + b"z" * 100 + b"\r\nend\n")
    assert lines(conn) == [b"ERR OTHER line 2: value too large (100 > 64)"]
    assert lnode.store.rev == 0


def test_an_unterminated_txn_times_out(conn, lnode, clock):
    conn.send(b"txn\nthen set /a 1\n")
    clock.advance(conn.limits.request_send_timeout - 1)
    conn.send(b"then set /b 1\n")           # each line restarts the timer
    clock.advance(conn.limits.request_send_timeout - 1)
    assert not conn.closed
    clock.advance(2)
    assert conn.raw() == b"ERR OTHER request timeout\r\n"
    assert conn.closed and lnode.store.rev == 0


def test_a_txn_left_open_by_a_half_close_is_answered(conn, lnode):
    conn.send(b"set /a 0\ntxn\nthen set /a 1\n")
    conn.proto.readConnectionLost()
    assert lines(conn) == [b"OK REV 1", b"ERR OTHER unterminated txn block: the client "
                           b"closed its side before end"]
    assert conn.closed and lnode.store.get("/a") == (b"0", 1)


def test_a_txn_completed_in_the_buffer_before_a_half_close_runs(lnode, clock):
    conn = Conn(lnode, clock, limits=Limits(max_batch=2))
    conn.send(b"txn\nthen set /a 1\nthen set /b 2\nend\n")
    conn.proto.readConnectionLost()        # the block's end is still unread
    assert lines(conn) == [b"OK TXN true 2 2", b"1 set /a", b"2 set /b"]
    assert conn.closed


def test_binary_junk_in_a_block_is_an_error_not_a_crash(conn, lnode):
    conn.send(b"txn\n\x00\xff\x80 \x01\nthen set /\xff 1\nif \xfe rev 0\nthen \x00\nend\nrev\n")
    assert lines(conn) == [
        b"ERR OTHER line 2: expected if, then, else or end; usage: txn, then lines: "
        b"if PATH rev REV | if PATH value VALUE | then WRITE | else WRITE; end",
        b"OK REV 0"]
    assert not conn.closed


TXN_WORDS = st.sampled_from([
    b"txn", b"end", b"if /a rev 0", b"if /a value x", b"if /a value {3}", b"then set /a 1",
    b"then set lease=1 /b {2}", b"else del /a", b"then cas /a 0 v", b"lease grant 5 1",
    b"then", b"if", b"else set", b"\x00\xff", b"then set /a {99999}", b"rev", b"TXN", b"END",
    b"then set /" + b"a" * 40 + b" v", b"set lease=1 /c x",
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(TXN_WORDS, st.sampled_from([b"\n", b"\r\n"]),
                          st.binary(max_size=4)), max_size=30))
def test_random_txn_streams_never_crash(parts):
    limits = Limits(max_line=64, max_value=32, max_path=24, max_txn_ops=5,
                    max_txn_bytes=64)
    clock = Clock()
    node = Node(store=Store(history=50), reactor=clock)
    conn = Conn(node, clock, limits=limits)
    conn.send(b"".join(w + end + junk for w, end, junk in parts))
    out = conn.raw()
    assert b"internal error" not in out
    block = conn.proto._block
    if block is not None:
        held = sum(len(c.path) for c in block.compares) + sum(
            len(o.path) + len(getattr(o, "value", b"")) for o in block.success + block.failure)
        assert held <= limits.max_txn_bytes
        assert len(block.compares + block.success + block.failure) <= limits.max_txn_ops
    conn.proto.readConnectionLost()
    clock.advance(limits.request_send_timeout + 1)
    assert conn.closed


def test_txn_block_alone_is_pure_data():
    block = TxnBlock(b"txn", Limits())
    assert not block.add(b"if /a rev 0")
    assert not block.add(b"then set lease=3 /a {1}", b"v")
    assert not block.add(b"else del /a 4")
    assert block.add(b"END")
    compares, success, failure = block.transaction()
    assert [c.path for c in compares] == ["/a"] and compares[0].rev == 0
    assert success[0].lease == 3 and success[0].value == b"v" and success[0].rev == -1
    assert failure[0].rev == 4


# -- rights ----------------------------------------------------------------------------------


def test_a_read_only_client_can_list_leases_but_write_none(lnode, clock):
    lnode.grant_lease(30, 6)
    conn = Conn(lnode, clock, secrets=Secrets(rw=b"rw", ro=b"ro"))
    conn.send(b"lease list\ntxn\nthen set /a 1\nend\n")
    assert lines(conn) == [b"ERR OTHER permission denied"] * 2
    conn.send(b"access ro\nlease grant 10\nlease keepalive 6\nlease revoke 6\n"
              b"set lease=6 /a 1\ncas lease=6 /a 0 1\ntxn\nthen set /a 1\nend\n"
              b"lease list\nlease ttl 6\n")
    assert lines(conn) == [b"OK"] + [b"ERR OTHER permission denied"] * 6 + [
        b"OK LEASES 1", b"6 30 30", b"OK TTL 6 30 30 0"]
    conn.send(b"access rw\nset lease=6 /a 1\n")
    assert lines(conn) == [b"OK", b"OK REV 1"]
    assert len(lnode.store.leases) == 1
