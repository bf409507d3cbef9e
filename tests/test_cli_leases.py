"""``doozer lease ...`` and ``set``/``add --lease`` against a real node over TCP."""

import json

import pytest
import pytest_twisted

from doozertw import cli_lease
from doozertw.testing.servers import in_thread, run_cli, start_servers, stop_all


@pytest.fixture
def server():
    servers = start_servers(1)
    yield servers[0]
    stop_all(servers)


def cli(server, *argv, stdin=b""):
    return in_thread(run_cli, argv, stdin, server.uri)


@pytest_twisted.inlineCallbacks
def test_grant_set_ttl_list_revoke(server):
    status, out, err = yield cli(server, "lease", "grant", "30")
    assert (status, err) == (0, "") and out.strip().isdigit()
    lease = out.strip().decode()
    assert (yield cli(server, "set", "--lease", lease, "/svc/a", "0", stdin=b"up")) == (
        0, b"1\n", "")
    assert (yield cli(server, "add", "--lease", lease, "/svc/b", stdin=b"up")) == (
        0, b"2\n", "")
    assert server.node.lease_of("/svc/a") == int(lease)
    status, out, err = yield cli(server, "lease", "ttl", lease)
    lines = out.decode().splitlines()
    assert status == 0 and lines[0].split()[:2] == [lease, "30"]
    assert 0 < float(lines[0].split()[2]) <= 30 and lines[1:] == ["/svc/a", "/svc/b"]
    status, out, err = yield cli(server, "lease", "list")
    assert status == 0 and [line.split()[0] for line in out.decode().splitlines()] == [lease]
    status, out, err = yield cli(server, "lease", "keepalive", lease)
    assert (status, float(out)) == (0, 30.0)
    assert (yield cli(server, "lease", "revoke", lease)) == (0, b"4\n", "")
    assert (yield cli(server, "get", "/svc/a")) == (0, b"", "")
    status, out, err = yield cli(server, "lease", "ttl", lease)
    assert (status, out) == (2, b"") and err.startswith("Error: NOENT")
    assert (yield cli(server, "lease", "list")) == (0, b"", "")


@pytest_twisted.inlineCallbacks
def test_grant_with_an_id_and_json(server):
    status, out, _ = yield cli(server, "--json", "lease", "grant", "20", "--id", "7")
    assert status == 0 and json.loads(out) == {"id": 7, "ttl": 20, "remaining": 20.0}
    status, out, err = yield cli(server, "lease", "grant", "20", "--id", "7")
    assert status == 1 and err.startswith("Error: REV_MISMATCH")
    status, out, _ = yield cli(server, "lease", "ttl", "7", "--json")
    assert status == 0 and json.loads(out)["paths"] == []
    status, out, _ = yield cli(server, "lease", "list", "--json")
    assert [x["id"] for x in json.loads(out)] == [7]


@pytest_twisted.inlineCallbacks
def test_errors_and_usage(server):
    status, _, err = yield cli(server, "set", "--lease", "999", "/x", "0", stdin=b"v")
    assert status == 2 and err.startswith("Error: NOENT")
    status, _, err = yield cli(server, "set", "--lease", "x", "/x", "0")
    assert status == 2 and 'invalid value "x"' in err
    for argv in (["lease"], ["lease", "frobnicate"], ["lease", "grant"],
                 ["lease", "grant", "ten"], ["lease", "keepalive", "1", "--every", "0"],
                 ["lease", "revoke", "1", "2"]):
        status, out, err = yield cli(server, *argv)
        assert status == 127 and out == b"" and "lease" in err, argv
    status, _, err = yield cli(server, "lease", "grant", "0")
    assert status == 2 and err.startswith("Error: RANGE")
    status, _, err = yield cli(server, "lease", "keepalive", "-3")
    assert status == 2 and err.startswith("Error: NOENT")
    status, _, err = yield cli(server, "help", "lease")
    assert status == 0


@pytest_twisted.inlineCallbacks
def test_keepalive_every_until_interrupted(server, monkeypatch):
    status, out, _ = yield cli(server, "lease", "grant", "10")
    lease = out.strip().decode()
    naps = []

    def nap(seconds):
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_lease, "sleep", nap)
    status, out, err = yield cli(server, "lease", "keepalive", lease, "--every", "2s")
    assert (status, err) == (0, "") and naps == [2.0, 2.0, 2.0]
    assert [float(x) for x in out.split()] == [10.0, 10.0, 10.0]


@pytest_twisted.inlineCallbacks
def test_keepalive_every_stops_when_the_lease_is_gone(server, monkeypatch):
    status, out, _ = yield cli(server, "lease", "grant", "10")
    lease = out.strip().decode()
    naps = []

    def nap(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            run_cli(["lease", "revoke", lease], uri=server.uri)

    monkeypatch.setattr(cli_lease, "sleep", nap)
    status, out, err = yield cli(server, "lease", "keepalive", lease, "--every", "20s")
    assert status == 2 and err.startswith("warning: --every 20s is not below")
    assert "Error: NOENT" in err and len(naps) == 2 and len(out.split()) == 2
