"""A real node whose data directory sits on a small tmpfs: when the disk
fills, writes fail with a clear "disk full" error while reads keep
working, and writes work again once space returns. Needs root (mount)."""

import os
import subprocess
import tempfile
import time

import pytest

from doozertw.testing.node_process import endpoint, free_ports, twistd_path
from doozertw.testing.proxy import child_env
from doozertw.testing.workload import WireClient, WireError

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk():
    mount = tempfile.mkdtemp(prefix="doozer-small-disk-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", mount],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=False)
        os.rmdir(mount)


def start_node(tmp_path, data_dir):
    client, peer = free_ports(2)
    log = open(tmp_path / "node.log", "ab")
    proc = subprocess.Popen(
        [twistd_path(), "--nodaemon", "--pidfile=", "--logfile", "-", "doozer",
         "--data-dir", data_dir, "--listen", endpoint(client), "--web", "none",
         "--peer-listen", endpoint(peer)],
        cwd=tmp_path, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            c = WireClient(client, timeout=5)
            c.set("/ready", -1, b"1")
            return proc, c
        except (OSError, WireError):
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "node.log").read_text())
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("node never took a write")


def fill(mount, leave_free):
    """Leave about ``leave_free`` bytes free on ``mount``."""
    st = os.statvfs(mount)
    size = st.f_bavail * st.f_frsize - leave_free
    path = os.path.join(mount, "filler")
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, size))
    return path


def test_a_full_disk_refuses_writes_keeps_reads_and_recovers(tmp_path, small_disk):
    proc, client = start_node(tmp_path, os.path.join(small_disk, "n1"))
    try:
        rev = client.set("/kept", -1, b"before the disk filled")
        filler = fill(small_disk, 4 * 1024 * 1024)  # below the 16 MiB reserve
        with pytest.raises(WireError) as info:
            client.set("/more", -1, b"x")
        assert "disk full" in info.value.detail
        assert client.get("/kept") == (b"before the disk filled", rev)  # reads go on
        os.remove(filler)
        assert client.set("/more", -1, b"y") > rev  # space is back: so are writes
        assert client.get("/more")[0] == b"y"
        assert proc.poll() is None
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=20)
