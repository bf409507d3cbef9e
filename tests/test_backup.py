"""Backup, restore and disaster recovery: the backup file format, GET
/v1/snapshot, ``doozer snapshot save|status|restore`` and ``doozer
recover``; restored and recovered data directories started as cluster
members on the in-memory network; one end-to-end run with real processes."""

import http.server
import io
import json
import pathlib
import subprocess
import sys
import threading

import pytest
from twisted.internet import task

from doozertw import cli
from doozertw.cluster import recovery
from doozertw.cluster.bootstrap import Phase
from doozertw.cluster.driver import Timing
from doozertw.cluster.memnet import MemoryNetwork
from doozertw.consensus import HardState
from doozertw.frontends.access import Secrets
from doozertw.testing.web import Client, make_site
from doozertw.node import Node
from doozertw.persist import DataDirError, DiskStorage, LazyFileSystem, OsFileSystem
from doozertw.persist.backup import (
    Backup, BackupError, decode_backup, encode_backup,
)
from doozertw.store import CLOBBER, Glob, Store
from doozertw.testing.node_process import endpoint, free_ports
from doozertw.testing.proxy import child_env
from doozertw.testing.spawn import http_ok, start_twistd
from doozertw.testing.memrun import outcome, run_until

VOTERS = ("n1", "n2", "n3")


def make_backup(writes=5, **fields):
    node = Node(store=Store())
    for i in range(writes):
        node.set(f"/k/{i}", CLOBBER, b"v%d" % i)
    store = node.store
    defaults = dict(cluster="prod", node="n1", revision=store.rev,
                    store_snapshot=store.snapshot(), raft_index=17, raft_term=3,
                    taken_at_ms=1_700_000_000_000)
    defaults.update(fields)
    return Backup(**defaults)


def user_files(store):
    return {e.path: (e.value, e.rev) for e in store.files(Glob("/**"))
            if not e.path.startswith("/ctl")}


# -- the file format ---------------------------------------------------------------


def test_round_trip_keeps_every_field():
    backup = make_backup()
    assert decode_backup(encode_backup(backup)) == backup


def test_every_flipped_byte_is_a_backup_error():
    data = encode_backup(make_backup(writes=2))
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x41
        with pytest.raises(BackupError):
            decode_backup(bytes(bad))


def test_every_truncation_and_trailing_bytes_are_backup_errors():
    data = encode_backup(make_backup(writes=2))
    for size in range(len(data)):
        with pytest.raises(BackupError):
            decode_backup(data[:size])
    with pytest.raises(BackupError, match="trailing"):
        decode_backup(data + b"\0")
    with pytest.raises(BackupError, match="truncated backup: .* header says"):
        decode_backup(data[:-10])


def test_magic_version_checksum_and_revision_are_checked():
    data = encode_backup(make_backup())
    with pytest.raises(BackupError, match="bad magic"):
        decode_backup(b"GARBAGE!" + data[8:])
    with pytest.raises(BackupError, match="unsupported backup version 9"):
        decode_backup(data[:8] + (9).to_bytes(4, "big") + data[12:])
    last = bytearray(data)
    last[-6] ^= 1  # inside the store snapshot
    with pytest.raises(BackupError, match="checksum"):
        decode_backup(bytes(last))
    with pytest.raises(BackupError, match="header says 99"):
        decode_backup(encode_backup(make_backup(revision=99)))
    with pytest.raises(BackupError, match="store snapshot in the backup is invalid"):
        decode_backup(encode_backup(make_backup(store_snapshot=b"DZS2junk", revision=0)))


# -- GET /v1/snapshot -------------------------------------------------------------


@pytest.fixture
def filled(node):
    for i in range(30):
        node.set(f"/d/{i % 4}/f{i}", CLOBBER, b"x" * (i * 5000))
    node.delete("/d/0/f0", CLOBBER)
    return node


def test_web_snapshot_is_the_store_at_one_revision(filled):
    filled.raft_position = lambda: (40, 2)
    code, headers, body = Client(make_site(filled)).call("GET", "/v1/snapshot")
    assert code == 200
    assert headers.getRawHeaders("content-type") == ["application/octet-stream"]
    assert headers.getRawHeaders("x-doozer-revision") == [str(filled.store.rev)]
    backup = decode_backup(body)
    assert (backup.revision, backup.node, backup.cluster) == (31, "test-node", "local")
    assert (backup.raft_index, backup.raft_term) == (40, 2)
    restored = recovery.open_store(backup.store_snapshot)
    assert user_files(restored) == user_files(filled.store)
    assert restored.get("/d/0/f0", 1) == (b"", 1)  # history kept: past reads work


def test_web_snapshot_needs_the_read_secret(filled):
    client = Client(make_site(filled, secrets=Secrets(rw=b"rw-secret", ro=b"ro-secret")))
    code, _, body = client.call("GET", "/v1/snapshot")
    assert code == 403 and json.loads(body)["detail"] == "permission denied"
    code, _, body = client.call("GET", "/v1/snapshot", headers={"X-Doozer-Secret": ["wrong"]})
    assert code == 403
    for secret in ("ro-secret", "rw-secret"):
        code, _, body = client.call("GET", "/v1/snapshot",
                                    headers={"Authorization": [f"Bearer {secret}"]})
        assert code == 200 and decode_backup(body).revision == filled.store.rev


# -- restore: three voters from one backup ----------------------------------------


def run_cluster(net, names, voters=VOTERS, timing=Timing(), seed=0):
    for i, name in enumerate(names):
        net.add(name, voters, seed=seed + i, durable=True, timing=timing)
    run_until(net, lambda: net.leader() is not None
              and all(m.driver.leader for m in net.members.values()), 8.0)
    return net.leader()


def write(net, path, value, via=None):
    return outcome(net, (via or net.leader()).node.set(path, CLOBBER, value), 3.0)


@pytest.fixture
def source_backup():
    """A backup taken from the leader of a 3-node cluster whose n3 restarted
    in memory (so /ctl names it ``n3~<incarnation>``), with deletes."""
    net = MemoryNetwork(task.Clock())
    for i, name in enumerate(VOTERS):
        net.add(name, VOTERS, seed=i)
    run_until(net, lambda: net.leader() is not None)
    for i in range(12):
        write(net, f"/app/k{i}", b"value %d" % i)
    write(net, "/app/gone", b"x")
    net.crash("n3")
    net.add("n3", VOTERS, seed=9)
    run_until(net, lambda: net.leader() is not None and any(
        m.startswith("n3~") for m in net.leader().driver.conf.voters), 8.0)
    outcome(net, net.leader().node.delete("/app/gone", CLOBBER), 3.0)
    leader = net.leader()
    assert leader.store.get("/ctl/node/n3/member")[0].startswith(b"n3~")
    return decode_backup(leader.node.backup()), user_files(leader.store)


def test_three_voters_restored_from_one_backup_form_a_cluster_with_every_file(
        source_backup):
    backup, before = source_backup
    net = MemoryNetwork(task.Clock(), cluster_name="restored")
    results = []
    for name in VOTERS:
        net.disks[name] = LazyFileSystem()
        results.append(recovery.restore_data_dir(
            net.disks[name], f"/data/{name}", backup, name, "restored", VOTERS))
    # every voter holds the same snapshot at index 1, term 1
    assert {(r.index, r.term, r.revision, r.voters) for r in results} == {
        (1, 1, results[0].revision, VOTERS)}
    assert results[0].revision > backup.revision  # the /ctl rewrite took revisions
    snapshots = set()
    for name in VOTERS:
        storage = DiskStorage.open(net.disks[name], f"/data/{name}", "restored", name)
        snapshots.add(storage.snapshot)
        assert storage.hard_state == HardState(term=1, vote="", commit=1)
        storage.close()
    assert len(snapshots) == 1  # byte for byte the same state on every voter
    leader = run_cluster(net, VOTERS, seed=40)
    for member in net.members.values():
        assert member.driver.member_id == member.name
        assert member.bootstrap.phase == Phase.MEMBER
        assert user_files(member.store) == before  # every file, same revision
        assert member.store.get("/ctl/node/n3/member")[0] == b"n3"
        assert member.store.get("/ctl/name")[0] == b"restored"
    new = write(net, "/app/after", b"new")
    assert new > results[0].revision > backup.revision
    net.run(3.0)  # membership is settled: nobody removed, nothing changed
    assert leader.driver.conf.voters == frozenset(VOTERS)
    assert all(not m.membership.changes for m in net.members.values())
    for member in net.members.values():
        run_until(net, lambda m=member: m.store.get("/app/after")[0] == b"new", 3.0)
    # history of the backup's window is still readable at old revisions
    rev_k0 = before["/app/k0"][1]
    assert net.leader().store.get("/app/k0", rev_k0) == (b"value 0", rev_k0)


def test_restore_refuses_a_non_empty_directory_and_a_name_not_in_voters(source_backup):
    backup, _ = source_backup
    fs = LazyFileSystem()
    recovery.restore_data_dir(fs, "/data/n1", backup, "n1", "c", VOTERS)
    with pytest.raises(DataDirError, match="not empty"):
        recovery.restore_data_dir(fs, "/data/n1", backup, "n1", "c", VOTERS)
    with pytest.raises(ValueError, match="not one of the voters"):
        recovery.restore_data_dir(fs, "/data/n4", backup, "n4", "c", VOTERS)


# -- disaster recovery ------------------------------------------------------------


def test_recover_one_survivor_of_three_keeps_its_log_and_takes_writes_alone():
    net = MemoryNetwork(task.Clock())
    leader = run_cluster(net, VOTERS, timing=Timing(compact_every=5))
    revs = [write(net, f"/k{i}", b"v%d" % i) for i in range(20)]
    # n1 takes writes cut off from the others: in its log, never committed
    survivor = leader
    net.isolate(survivor.name)
    pending = [survivor.node.set(f"/late{i}", CLOBBER, b"late") for i in range(3)]
    net.run(0.2)
    for name in list(net.members):
        net.crash(name)
    for d in pending:
        d.addErrback(lambda _: None)
    old_disk = net.disks[survivor.name]
    path = f"/data/{survivor.name}"
    stored = DiskStorage.open(old_disk, path, "mem", survivor.name)
    snapshot_index, logged = stored.snapshot.index, len(stored.entries)
    stored.close()
    assert snapshot_index > 0 and logged > 0  # a snapshot AND entries after it

    rebuilt = recovery.rebuild_survivor(old_disk, path, "mem", survivor.name)
    assert rebuilt.replayed == logged and rebuilt.index > rebuilt.commit
    fresh_disk = LazyFileSystem()
    written = recovery.write_recovered(fresh_disk, path, rebuilt)
    assert written.voters == (rebuilt.member_id,) and written.index == rebuilt.index

    net2 = MemoryNetwork(task.Clock())
    net2.disks[survivor.name] = fresh_disk
    alone = net2.add(survivor.name, VOTERS, durable=True, seed=50)
    run_until(net2, lambda: alone.driver.is_leader, 5.0)
    assert alone.driver.conf.voters == frozenset({rebuilt.member_id})
    for i, rev in enumerate(revs):
        assert alone.store.get(f"/k{i}") == (b"v%d" % i, rev)
    for i in range(3):
        assert alone.store.get(f"/late{i}")[0] == b"late"  # uncommitted, now kept
    after = outcome(net2, alone.node.set("/after", CLOBBER, b"x"), 3.0)
    assert after > written.revision
    # the others come back empty, attached, and are promoted through /ctl/cal
    for i, name in enumerate(n for n in VOTERS if n != survivor.name):
        joiner = net2.add(name, (), durable=True, seed=60 + i)
        joiner.add_known_peer(survivor.name, net2.endpoint(survivor.name))
        run_until(net2, lambda j=joiner: j.driver.is_member(), 5.0)
        outcome(net2, alone.node.set(f"/ctl/cal/{10 + i}", 0, name.encode()), 3.0)
    run_until(net2, lambda: len(alone.driver.conf.voters) == 3, 8.0)
    final = outcome(net2, alone.node.set("/final", CLOBBER, b"y"), 3.0)
    for member in net2.members.values():
        run_until(net2, lambda m=member: m.store.rev >= final, 3.0)
        assert member.store.get("/k7") == (b"v7", revs[7])


def test_recover_refuses_an_empty_or_foreign_directory():
    fs = LazyFileSystem()
    with pytest.raises(DataDirError, match="no data directory"):
        recovery.rebuild_survivor(fs, "/data/n1", "mem", "n1")
    net = MemoryNetwork(task.Clock())
    net.disks["n1"] = fs
    run_cluster(net, ("n1",), voters=("n1",))
    net.crash("n1")
    with pytest.raises(DataDirError, match="belongs to cluster 'mem'"):
        recovery.rebuild_survivor(fs, "/data/n1", "other", "n1")


# -- the CLI, in process ----------------------------------------------------------


def doozer(*argv, uri=None):
    out, err = io.BytesIO(), io.StringIO()
    environ = {"DOOZER_URI": uri} if uri else {}
    status = cli.main(list(argv), stdout=out, stderr=err, environ=environ)
    return status, out.getvalue().decode(), err.getvalue()


def test_cli_status_restore_and_recover_in_place(tmp_path, source_backup):
    backup, before = source_backup
    file = tmp_path / "b.backup"
    file.write_bytes(encode_backup(backup))
    status, out, err = doozer("snapshot", "status", str(file))
    assert status == 0, err
    assert f"revision {backup.revision}\n" in out and "cluster mem\n" in out
    files = recovery.open_store(backup.store_snapshot).file_count
    assert f"files {files}\n" in out and f"size {file.stat().st_size}\n" in out

    dirs = {n: tmp_path / n for n in VOTERS}
    for name in VOTERS:
        status, out, err = doozer("snapshot", "restore", str(file), "--data-dir",
                                  str(dirs[name]), "--name", name, "--voters", "n1,n2,n3",
                                  "--cluster", "prod")
        assert status == 0, err
        assert "raft snapshot at index 1, term 1" in out
    assert not list(tmp_path.glob("*.restore-tmp"))
    status, _, err = doozer("snapshot", "restore", str(file), "--data-dir",
                            str(dirs["n1"]), "--name", "n1", "--voters", "n1")
    assert status == 2 and "not empty" in err
    status, _, err = doozer("snapshot", "restore", str(file), "--data-dir",
                            str(tmp_path / "x"), "--name", "n9", "--voters", "n1,n2")
    assert status == 2 and "not one of --voters" in err
    status, _, err = doozer("snapshot", "restore", str(file), "--data-dir", "d")
    assert status == 127 and "required" in err

    status, out, err = doozer("--json", "recover", "--data-dir", str(dirs["n2"]),
                              "--name", "n2", "--cluster", "prod")
    assert status == 0, err
    report = json.loads(out)
    assert report["member"] == "n2" and report["index"] == 1
    aside = pathlib.Path(report["old_data_dir"])
    assert aside.name.startswith("n2.before-recover-") and (aside / "meta").exists()
    storage = DiskStorage.open(OsFileSystem(), str(dirs["n2"]), "prod", "n2")
    try:
        assert storage.snapshot.meta.conf.voters == frozenset({"n2"})
    finally:
        storage.close()
    out_dir = tmp_path / "n3-new"
    status, out, err = doozer("recover", "--data-dir", str(dirs["n3"]), "--name", "n3",
                              "--cluster", "prod", "--out", str(out_dir))
    assert status == 0, err
    assert "kept store revision" in out and (dirs["n3"] / "meta").exists()
    status, _, err = doozer("recover", "--data-dir", str(dirs["n1"]), "--name", "n1",
                            "--cluster", "wrong")
    assert status == 2 and "belongs to cluster 'prod'" in err


class _BackupHandler(http.server.BaseHTTPRequestHandler):
    body = b""
    secret = None

    def do_GET(self):
        if self.path != "/v1/snapshot" or self.headers.get("X-Doozer-Secret") != self.secret:
            data = json.dumps({"error": "OTHER", "code": 0,
                               "detail": "permission denied"}).encode()
            self.send_response(403)
        else:
            data = self.body
            self.send_response(200)
            self.send_header("X-Doozer-Revision", str(decode_backup(data).revision))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_cli_save_fetches_checks_and_writes_atomically(tmp_path, filled):
    _BackupHandler.body = filled.backup()
    _BackupHandler.secret = "s3cret"
    server = http.server.HTTPServer(("127.0.0.1", 0), _BackupHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    web = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        target = tmp_path / "out.backup"
        status, out, err = doozer("snapshot", "save", str(target), "--web", web,
                                  uri="doozer:?ca=127.0.0.1:1&sk=s3cret")
        assert (status, out) == (0, f"{filled.store.rev}\n"), err
        assert decode_backup(target.read_bytes()).revision == filled.store.rev
        status, _, err = doozer("snapshot", "save", str(tmp_path / "no"), "--web", web)
        assert status == 2 and "HTTP 403: OTHER: permission denied" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.backup"]
    finally:
        server.shutdown()
        server.server_close()


# -- end to end: real twistd, real CLI ---------------------------------------------


class _Twistd:
    """One durable ``twistd doozer`` on ``data_dir``, and the CLI pointed at it."""

    def __init__(self, cwd, data_dir, name="e2e"):
        self.client, self.web, peer = free_ports(3)
        self.node = start_twistd(
            ["--name", name, "--data-dir", data_dir, "--listen", endpoint(self.client),
             "--web", endpoint(self.web), "--peer-listen", endpoint(peer)],
            cwd, http_ok(f"http://127.0.0.1:{self.web}/readyz"), name=f"{name}-{self.web}")

    def doozer(self, *argv, stdin=b""):
        return subprocess.run([sys.executable, "-m", "doozertw.cli", "-a",
                               f"127.0.0.1:{self.client}", *argv], input=stdin,
                              env=child_env(), capture_output=True, timeout=60)

    def stop(self):
        self.node.stop(timeout=15)


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "doozertw.cli", *argv], env=child_env(),
                          capture_output=True, timeout=60, text=True)


@pytest.mark.e2e
def test_e2e_save_restore_and_read_back(tmp_path):
    node = _Twistd(tmp_path, tmp_path / "data-1")
    try:
        revs = {}
        for i in range(5):
            done = node.doozer("set", f"/e2e/k{i}", "-1", stdin=b"value-%d" % i)
            assert done.returncode == 0, done.stderr
            revs[i] = int(done.stdout)
        file = tmp_path / "e2e.backup"
        saved = _cli("snapshot", "save", str(file), "--web", f"http://127.0.0.1:{node.web}")
        assert saved.returncode == 0, saved.stderr
        backup_rev = int(saved.stdout)
        assert backup_rev >= revs[4]
    finally:
        node.stop()
    restored = _cli("snapshot", "restore", str(file), "--data-dir",
                    str(tmp_path / "data-2"), "--name", "e2e", "--voters", "e2e")
    assert restored.returncode == 0, restored.stderr
    node = _Twistd(tmp_path, tmp_path / "data-2")
    try:
        for i in range(5):
            got = node.doozer("--json", "get", f"/e2e/k{i}")
            assert got.returncode == 0, got.stderr
            assert json.loads(got.stdout)["value"] == f"value-{i}"
            assert json.loads(got.stdout)["rev"] == revs[i]
        later = node.doozer("set", "/e2e/after", "-1", stdin=b"x")
        assert later.returncode == 0 and int(later.stdout) > backup_rev
    finally:
        node.stop()
