"""A real node whose data directory sits on a small tmpfs: when the disk
fills, writes fail with a clear "disk full" error while reads keep
working, and writes work again once space returns. Needs root (mount)."""

import os
import subprocess
import tempfile

import pytest

from doozertw.testing.node_process import endpoint, free_ports
from doozertw.testing.spawn import start_twistd, writable
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
    node = start_twistd(["--data-dir", data_dir, "--listen", endpoint(client), "--web", "none",
                         "--peer-listen", endpoint(peer)], tmp_path, writable(client))
    return node, WireClient(client, timeout=5)


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
        assert proc.running()
    finally:
        client.close()
        proc.stop(timeout=20)
