"""Micro-benchmark: durable appends per second on the real disk.

    python -m doozertw.persist.bench_disk [--seconds 2] [--dir /some/tmp]

For 1, 8 and 64 entries (100 bytes each) per durable batch it measures
DiskStorage.save (one write + one fsync per batch) and sqlite3 doing the
same work (WAL journal mode, synchronous=FULL, one transaction per batch
inserting the entries and updating the hard state row). Prints entries/s
and batches (fsyncs)/s for both.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time

from doozertw.consensus.messages import Entry, HardState
from doozertw.consensus.ready import Ready
from doozertw.persist.fs import OsFileSystem
from doozertw.persist.meta import FORMAT_VERSION, DataDirMeta
from doozertw.persist.storage import DiskStorage

PAYLOAD = b"x" * 100


def bench_wal(directory: str, batch: int, seconds: float) -> tuple[float, float]:
    """(entries/s, batches/s) for DiskStorage.save on the real disk."""
    meta = DataDirMeta(FORMAT_VERSION, "bench", "n1", "m1")
    storage = DiskStorage.create(OsFileSystem(), f"{directory}/wal-{batch}",
                                 meta)
    index, batches = 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        entries = tuple(Entry(1, index + k + 1, data=PAYLOAD)
                        for k in range(batch))
        index += batch
        storage.save(Ready(entries=entries,
                           hard_state=HardState(1, "n1", index)))
        batches += 1
    elapsed = time.perf_counter() - start
    storage.close()
    return index / elapsed, batches / elapsed


def bench_sqlite(directory: str, batch: int, seconds: float) -> tuple[float, float]:
    """(entries/s, batches/s) for the same work in sqlite3."""
    db = sqlite3.connect(f"{directory}/log-{batch}.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER, "
               "kind INTEGER, data BLOB)")
    db.execute("CREATE TABLE hs (id INTEGER PRIMARY KEY, term INTEGER, "
               "vote TEXT, commit_ INTEGER)")
    db.execute("INSERT INTO hs VALUES (0, 0, '', 0)")
    index, batches = 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        rows = [(index + k + 1, 1, 0, PAYLOAD) for k in range(batch)]
        index += batch
        db.execute("BEGIN")
        db.execute("DELETE FROM log WHERE idx >= ?", (rows[0][0],))
        db.executemany("INSERT INTO log VALUES (?, ?, ?, ?)", rows)
        db.execute("UPDATE hs SET term=1, vote='n1', commit_=? WHERE id=0",
                   (index,))
        db.execute("COMMIT")
        batches += 1
    elapsed = time.perf_counter() - start
    db.close()
    return index / elapsed, batches / elapsed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dir", default=None,
                        help="parent of the temporary directory")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"durable appends on {tmp} (100-byte entries, "
              f"{args.seconds:g} s per run)")
        print(f"{'entries/fsync':>13} {'WAL entries/s':>14} {'WAL fsyncs/s':>13}"
              f" {'sqlite entries/s':>17} {'sqlite commits/s':>17}")
        for batch in (1, 8, 64):
            w_ent, w_b = bench_wal(tmp, batch, args.seconds)
            s_ent, s_b = bench_sqlite(tmp, batch, args.seconds)
            print(f"{batch:>13} {w_ent:>14.0f} {w_b:>13.0f} {s_ent:>17.0f}"
                  f" {s_b:>17.0f}")


if __name__ == "__main__":
    main()
