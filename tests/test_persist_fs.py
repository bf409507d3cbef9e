"""The FileSystem implementations: LazyFileSystem's crash model and fault
injection, OsFileSystem's real calls and locks."""

import errno

import pytest

from doozertw.persist.fs import LazyFileSystem, OsFileSystem, SimulatedCrash


def _write(fs, path, data, sync=True):
    h = fs.open_append(path)
    h.write(data)
    if sync:
        h.fsync()
    h.close()


def test_lazy_crash_keeps_only_synced_bytes():
    fs = LazyFileSystem()
    fs.makedirs("/d")
    h = fs.open_append("/d/f")
    h.write(b"abc")
    h.fsync()
    h.write(b"def")
    fs.fsync_dir("/d")
    assert fs.read_file("/d/f") == b"abcdef"
    fs.crash()
    assert fs.read_file("/d/f") == b"abc"
    with pytest.raises(OSError) as info:
        h.write(b"x")  # the handle died with the process
    assert info.value.errno == errno.EBADF


def test_lazy_names_need_a_directory_fsync():
    fs = LazyFileSystem()
    fs.makedirs("/d")
    _write(fs, "/d/a", b"1")
    fs.crash()
    assert not fs.exists("/d/a")  # content synced, name never was
    _write(fs, "/d/a", b"1")
    fs.fsync_dir("/d")
    _write(fs, "/d/tmp", b"2")
    fs.rename("/d/tmp", "/d/a")
    assert fs.read_file("/d/a") == b"2"
    fs.crash()
    assert fs.read_file("/d/a") == b"1"
    assert fs.listdir("/d") == ["a"]
    fs.remove("/d/a")
    fs.crash()
    assert fs.exists("/d/a")
    fs.remove("/d/a")
    fs.fsync_dir("/d")
    fs.crash()
    assert not fs.exists("/d/a")


def test_lazy_truncate_is_undone_by_a_crash_until_fsync():
    fs = LazyFileSystem()
    fs.makedirs("/d")
    _write(fs, "/d/f", b"abcdef")
    fs.fsync_dir("/d")
    h = fs.open_append("/d/f")
    h.truncate(2)
    assert fs.read_file("/d/f") == b"ab"
    fs.crash()
    assert fs.read_file("/d/f") == b"abcdef"
    h = fs.open_append("/d/f")
    h.truncate(2)
    h.fsync()
    fs.crash()
    assert fs.read_file("/d/f") == b"ab"


def test_lazy_enospc_writes_what_fits_then_fails():
    fs = LazyFileSystem()
    fs.makedirs("/d")
    h = fs.open_append("/d/f")
    fs.fail_writes_with_enospc_after(4)
    h.write(b"ab")
    with pytest.raises(OSError) as info:
        h.write(b"cdef")
    assert info.value.errno == errno.ENOSPC
    assert fs.read_file("/d/f") == b"abcd"
    with pytest.raises(OSError):
        h.write(b"g")
    fs.clear_enospc()
    h.write(b"g")
    assert fs.read_file("/d/f") == b"abcdg"


def test_lazy_eio_on_fsync_and_write():
    fs = LazyFileSystem()
    fs.makedirs("/d")
    h = fs.open_append("/d/f")
    h.write(b"ab")
    fs.fail_next_fsync_with_eio()
    with pytest.raises(OSError) as info:
        h.fsync()
    assert info.value.errno == errno.EIO
    fs.fsync_dir("/d")
    fs.crash()
    assert fs.read_file("/d/f") == b""  # the failed fsync synced nothing
    fs.fail_next_write_with_eio()
    with pytest.raises(OSError) as info:
        fs.open_append("/d/f").write(b"x")
    assert info.value.errno == errno.EIO


def test_lazy_crash_at_fsync_and_locks():
    fs = LazyFileSystem()
    fs.makedirs("/d")
    lock = fs.lock("/d/LOCK")
    with pytest.raises(OSError) as info:
        fs.lock("/d/LOCK")
    assert info.value.errno == errno.EWOULDBLOCK
    lock.release()
    fs.lock("/d/LOCK")
    h = fs.open_append("/d/f")
    h.write(b"a")
    fs.crash_at_fsync(2)
    h.fsync()
    h.write(b"b")
    with pytest.raises(SimulatedCrash):
        h.fsync()
    assert fs.durable_content("/d/f") is None
    fs.lock("/d/LOCK")  # the crash released it


def test_lazy_errors_carry_errno():
    fs = LazyFileSystem()
    for call in (lambda: fs.read_file("/x"), lambda: fs.remove("/x"),
                 lambda: fs.listdir("/x"), lambda: fs.open_append("/x/y"),
                 lambda: fs.size("/x")):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.ENOENT


def test_os_filesystem_basics(tmp_path):
    fs = OsFileSystem()
    d = str(tmp_path / "a" / "b")
    fs.makedirs(d)
    fs.makedirs(d)
    h = fs.open_append(f"{d}/f")
    h.write(b"hello")
    h.write(b" world")
    h.fsync()
    h.truncate(5)
    h.close()
    h.close()
    fs.fsync_dir(d)
    assert fs.read_file(f"{d}/f") == b"hello"
    assert fs.size(f"{d}/f") == 5
    fs.rename(f"{d}/f", f"{d}/g")
    assert fs.listdir(d) == ["g"] and fs.exists(f"{d}/g") and fs.isdir(d)
    fs.remove(f"{d}/g")
    assert not fs.exists(f"{d}/g")
    lock = fs.lock(f"{d}/LOCK")
    with pytest.raises(OSError) as info:
        fs.lock(f"{d}/LOCK")  # another open file description: refused
    assert info.value.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    lock.release()
    fs.lock(f"{d}/LOCK").release()
