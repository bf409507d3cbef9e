"""The `doozer` command line against a real node over TCP.

Expected outputs are what the Go doozer command line prints for the same
store (formats from its cmd/doozer sources): `set` prints the new rev,
`get` the raw body, `stat` "<rev> <len>" or "d <n>", `wait`/`watch`
"<path> <rev> <set|del> <len>\\n<body>\\n", errors "Error: <CODE>" on stderr
with exit 1 for a rev mismatch and 2 otherwise, usage errors exit 127.
"""

import io
import json
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from doozertw.cli import main, parse_duration, parse_flags, Options, UsageError
from doozertw.testing.servers import in_thread, run_cli, start_servers, stop_all


@pytest.fixture
def server():
    servers = start_servers(1)
    yield servers[0]
    stop_all(servers)


def cli(server, *argv, stdin=b""):
    return in_thread(run_cli, argv, stdin, server.uri)


@pytest_twisted.inlineCallbacks
def test_set_get_add_del_and_exit_codes(server):
    assert (yield cli(server, "set", "/msg", "0", stdin=b"hello")) == (0, b"1\n", "")
    assert (yield cli(server, "get", "/msg")) == (0, b"hello", "")
    assert (yield cli(server, "get", "/nothing")) == (0, b"", "")
    assert (yield cli(server, "set", "/msg", "0", stdin=b"again")) == (
        1, b"", "Error: REV_MISMATCH\n")
    assert (yield cli(server, "add", "/msg", stdin=b"x")) == (1, b"", "Error: REV_MISMATCH\n")
    assert (yield cli(server, "add", "/new", stdin=b"x")) == (0, b"2\n", "")
    assert (yield cli(server, "set", "/msg", "1", stdin=b"v2")) == (0, b"3\n", "")
    assert (yield cli(server, "-r", "1", "get", "/msg")) == (0, b"hello", "")
    assert (yield cli(server, "get", "-r", "2", "/msg")) == (0, b"hello", "")
    assert (yield cli(server, "del", "/msg", "1")) == (1, b"", "Error: REV_MISMATCH\n")
    assert (yield cli(server, "del", "/msg", "3")) == (0, b"", "")
    status, out, err = yield cli(server, "set", "bad", "0")
    assert status == 2 and err.startswith("Error: BAD_PATH")
    status, out, err = yield cli(server, "set", "/x", "notanumber")
    assert status == 2 and err.startswith("Error: ") and "invalid syntax" in err


@pytest_twisted.inlineCallbacks
def test_rev_self_nop_touch(server):
    assert (yield cli(server, "rev")) == (0, b"0\n", "")
    assert (yield cli(server, "self")) == (0, b"n1", "")
    assert (yield cli(server, "nop")) == (0, b"", "")
    assert (yield cli(server, "touch", "/t")) == (0, b"", "")
    assert (yield cli(server, "touch", "/t")) == (0, b"", "")
    assert (yield cli(server, "stat", "/t")) == (0, b"2 0\n", "")
    assert (yield cli(server, "rev")) == (0, b"2\n", "")


@pytest_twisted.inlineCallbacks
def test_stat_find_ls_walk_tree(server):
    for path, body in [("/a/b", b"12"), ("/a/c/d", b"345"), ("/e", b"")]:
        yield cli(server, "set", path, "-1", stdin=body)
    assert (yield cli(server, "stat", "/a")) == (0, b"d 2\n", "")
    assert (yield cli(server, "stat", "/a/c/d")) == (0, b"2 3\n", "")
    assert (yield cli(server, "stat", "/zz")) == (2, b"", "No such file or directory: /zz\n")
    assert (yield cli(server, "find", "/")) == (
        0, b"/\n/a\n/a/b\n/a/c\n/a/c/d\n/e\n", "")
    assert (yield cli(server, "find", "/a/c")) == (0, b"/a/c\n/a/c/d\n", "")
    assert (yield cli(server, "find", "/zz")) == (0, b"", "NOENT\n")
    assert (yield cli(server, "-r", "1", "find", "/")) == (0, b"/\n/a\n/a/b\n", "")
    assert (yield cli(server, "ls", "/a")) == (0, b"b\nc\n", "")
    assert (yield cli(server, "walk", "/a/**")) == (0, b"/a/b 1 2\n12\n/a/c/d 2 3\n345\n", "")
    status, out, _ = yield cli(server, "tree", "/a")
    assert status == 0 and out.decode().splitlines() == [
        "/a/  (2 entries)", "  b  rev 1, 2 bytes", "  c/  (1 entries)", "    d  rev 2, 3 bytes"]


@pytest_twisted.inlineCallbacks
def test_wait_formats_and_timeout(server):
    yield cli(server, "set", "/w/x", "0", stdin=b"body")
    yield cli(server, "del", "/w/x", "1")
    assert (yield cli(server, "-r", "1", "wait", "/w/*")) == (0, b"/w/x 1 set 4\nbody\n", "")
    # Without -r the Go tool waits from the current revision, which is the delete.
    assert (yield cli(server, "wait", "/w/*")) == (0, b"/w/x 2 del 0\n\n", "")
    assert (yield cli(server, "-t", "150ms", "wait", "/never")) == (2, b"", "Error: wait timeout\n")
    assert (yield cli(server, "wait", "-t", "0.1s", "/never")) == (2, b"", "Error: wait timeout\n")


class StopAfter(io.BytesIO):
    """A stdout that breaks the pipe at the ``n``-th flush (one per watch record)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def flush(self):
        self.n -= 1
        if self.n <= 0:
            raise BrokenPipeError()


@pytest_twisted.inlineCallbacks
def test_watch_prints_every_change_in_order(server):
    for i in range(3):
        yield cli(server, "set", f"/w/{i}", "0", stdin=str(i).encode())
    out = StopAfter(2)
    status, data, _ = yield in_thread(run_cli, ["-r", "2", "watch", "/w/*"], b"", server.uri, out)
    assert data == b"/w/1 2 set 1\n1\n/w/2 3 set 1\n2\n"
    assert status == 2

    def watch_then_write():
        import threading
        out = StopAfter(3)
        result = []
        t = threading.Thread(target=lambda: result.append(
            run_cli(["watch", "/w/**"], b"", server.uri, out)))
        t.start()
        deadline = time.monotonic() + 5
        while server.node.store.watch_count == 0 and time.monotonic() < deadline:
            time.sleep(0.005)           # until the CLI's WAIT reached the store
        for i in range(3, 7):
            run_cli(["set", f"/w/{i}", "0"], str(i).encode(), server.uri)
        t.join(10)
        return result[0]

    status, data, _ = yield in_thread(watch_then_write)
    # From the current revision (3, which matches): Go's watch starts there.
    assert data == b"/w/2 3 set 1\n2\n/w/3 4 set 1\n3\n/w/4 5 set 1\n4\n"


@pytest_twisted.inlineCallbacks
def test_watch_fails_over_to_another_address():
    first, second = start_servers(2)
    uri = f"doozer:?ca={first.address}&ca={second.address}"
    try:
        def watch_across_kill():
            import threading
            out = StopAfter(4)
            result = []
            t = threading.Thread(target=lambda: result.append(
                run_cli(["-r", "1", "watch", "/k/*"], b"", uri, out)))
            t.start()
            for i in range(2):
                run_cli(["set", f"/k/{i}", "0"], b"v", first.uri)
            deadline = time.monotonic() + 5
            while out.n > 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            threads.blockingCallFromThread(reactor, first.kill)
            for i in range(2, 4):
                run_cli(["set", f"/k/{i}", "0"], b"v", second.uri)
            t.join(10)
            return result[0]

        status, data, _ = yield in_thread(watch_across_kill)
        assert data == b"".join(b"/k/%d %d set 1\nv\n" % (i, i + 1) for i in range(4))
    finally:
        yield second.kill()


@pytest_twisted.inlineCallbacks
def test_json_output(server):
    yield cli(server, "set", "/j/a", "0", stdin=b"text")
    yield cli(server, "set", "/j/b", "0", stdin=b"\xff\x00")
    status, out, _ = yield cli(server, "--json", "get", "/j/a")
    assert json.loads(out) == {"path": "/j/a", "rev": 1, "value": "text"}
    status, out, _ = yield cli(server, "get", "--json", "/j/b")
    assert json.loads(out) == {"path": "/j/b", "rev": 2, "value_base64": "/wA="}
    status, out, _ = yield cli(server, "--json", "stat", "/j")
    assert json.loads(out) == {"path": "/j", "rev": -2, "len": 2, "dir": True}
    status, out, _ = yield cli(server, "--json", "find", "/j")
    assert json.loads(out) == ["/j", "/j/a", "/j/b"]
    status, out, _ = yield cli(server, "--json", "-r", "1", "wait", "/j/*")
    assert json.loads(out) == {"path": "/j/a", "rev": 1, "kind": "set", "len": 4, "value": "text"}
    status, out, _ = yield cli(server, "--json", "rev")
    assert json.loads(out) == {"rev": 2}


@pytest_twisted.inlineCallbacks
def test_members_reads_ctl(server):
    yield server.node.describe_self(server.address, hostname="h")
    yield cli(server, "set", "/ctl/cal/0", "0", stdin=b"n1")
    yield cli(server, "set", "/ctl/node/n1/applied", "0", stdin=b"7")
    yield cli(server, "set", "/ctl/node/n9/addr", "0", stdin=b"10.0.0.9:8046")
    status, out, _ = yield cli(server, "members")
    assert status == 0
    assert out.decode().splitlines() == [
        "cluster local", "leader -", f"n1 voter {server.address} 7", "n9 learner 10.0.0.9:8046 -"]
    status, out, _ = yield cli(server, "--json", "members")
    assert json.loads(out)["nodes"][0] == {
        "id": "n1", "role": "voter", "addr": server.address, "applied": 7}


@pytest_twisted.inlineCallbacks
def test_addresses_uri_env_and_flags(server):
    # -a wins over DOOZER_URI; a bare host:port is accepted too.
    out = io.BytesIO()
    status = yield in_thread(
        lambda: main(["-a", server.address, "rev"], stdout=out, stderr=io.StringIO(),
                     environ={"DOOZER_URI": "doozer:?ca=127.0.0.1:1"}))
    assert (status, out.getvalue()) == (0, b"0\n")
    res = yield in_thread(run_cli, ["rev"], b"", "doozer:?ca=127.0.0.1:1")
    assert res[0] == 2 and res[2].startswith("Error: no doozer server reachable")
    res = yield in_thread(run_cli, ["rev"], b"", f"doozer:?ca=127.0.0.1:1&ca={server.address}")
    assert res == (0, b"0\n", "")
    res = yield in_thread(run_cli, ["-a", "nonsense", "rev"], b"", None)
    assert res[0] == 2


@pytest_twisted.inlineCallbacks
def test_cluster_name_is_looked_up_in_the_boot_cluster(server):
    (boot,) = start_servers(1)
    try:
        yield cli(boot, "set", "/ctl/ns/prod/n1", "0", stdin=server.address.encode())
        yield cli(server, "set", "/only-here", "0", stdin=b"x")
        res = yield in_thread(
            run_cli, ["-b", boot.uri, "-a", "doozer:?cn=prod", "get", "/only-here"])
        assert res == (0, b"x", "")
    finally:
        yield boot.kill()


def test_usage_errors_exit_127():
    status, out, err = run_cli([])
    assert status == 127 and err.startswith("doozer: missing command\nUse: doozer")
    status, out, err = run_cli(["frob"])
    assert status == 127 and err.startswith("Unknown command: frob\n")
    status, out, err = run_cli(["get"])
    assert status == 127 and err == "get: wrong number of arguments\n"
    assert out.startswith(b"Use: doozer [options] get [options] <path>\n\n")
    status, out, err = run_cli(["-x", "rev"])
    assert status == 2 and err.startswith("flag provided but not defined: -x")


def test_help_and_version():
    status, out, err = run_cli(["help", "wait"])
    assert status == 0 and out.startswith(b"Use: doozer [options] wait [options] <glob>\n\n")
    assert b"<path> <rev> <set|del> <len>" in out
    status, out, err = run_cli(["-h"])
    assert status == 0 and "Commands:" in err
    for name in ("add", "del", "find", "get", "help", "nop", "rev", "self", "set", "stat",
                 "touch", "wait", "watch", "ls", "tree", "members"):
        assert f"\n  {name} " in err
    assert run_cli(["get", "-h"])[1].startswith(b"Use: doozer [options] get")
    assert run_cli(["-v"])[1].startswith(b"doozer ")


def test_flag_parsing_follows_go_rules():
    options = Options()
    rest = parse_flags(["-r=5", "--json", "-t", "1m30s", "set", "/x", "-1"], options)
    assert (options.rev, options.json, options.timeout, rest) == (
        5, True, 90.0, ["set", "/x", "-1"])
    assert parse_flags(["--", "-r"], Options()) == ["-r"]
    with pytest.raises(UsageError):
        parse_flags(["-r"], Options())
    with pytest.raises(UsageError):
        parse_flags(["-r", "x"], Options())


@pytest.mark.parametrize("text, seconds", [
    ("1m30s", 90.0), ("250ms", 0.25), ("2h", 7200.0), ("1.5s", 1.5), ("0", 0.0), ("3", 3.0),
    ("1h2m3s4ms", 3723.004)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "s", "5x", "1m5"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("argv", [["--help"], ["-help"], ["-h"], ["help"]])
def test_every_way_of_asking_for_help_prints_the_usage(argv):
    status, out, err = run_cli(argv)
    assert status == 0 and err.startswith("Use: doozer [options] <command>")
    assert "not defined" not in err and "wrong number" not in err
