"""Recipe participants in processes of their own, for end-to-end kill tests.

``python -m doozertw.testing.recipe_holders KIND URI TTL PATH [ARG...]``
runs one participant of a recipe (see ``KINDS``) against the cluster at
``URI`` and reports what it does as JSON lines on stdout, each
``[what, *details, monotonic time]``, flushed at once, so a test knows
what the process had done when it was SIGKILLed. A participant that holds
something (a lock, a leadership, a registration, a barrier entry) then
sleeps until it is killed; loops (Counter, Queue) run until killed.

``Holder`` (test side) starts one such process, collects its lines in a
thread, and kills it (SIGKILL) and reaps it; ``Holders`` kills every
process it started at the end of a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doozertw.testing.tcpcluster import until

Record = list[Any]


# --- the participant side (runs in the child process) -----------------------


def say(*record: Any) -> None:
    """One JSON line on stdout, flushed: what this participant just did."""
    sys.stdout.write(json.dumps([*record, time.monotonic()]) + "\n")
    sys.stdout.flush()


def _hold() -> None:
    while True:
        time.sleep(3600)


def _election(session: Any, client: Any, path: str, value: str) -> None:
    from doozertw.client.recipes import Election
    say("leading", Election(session, path).campaign(value), value)
    _hold()


def _semaphore(session: Any, client: Any, path: str, n: str, value: str) -> None:
    from doozertw.client.recipes import Semaphore
    say("holding", Semaphore(session, path, int(n), value=value).acquire(), value)
    _hold()


def _rw(session: Any, client: Any, path: str, mode: str) -> None:
    from doozertw.client.recipes import RWLock
    rw = RWLock(session, path)
    lock = rw.read_lock if mode == "read" else rw.write_lock
    say("holding", lock.acquire(), mode)
    _hold()


def _register(session: Any, client: Any, path: str, name: str, value: str) -> None:
    from doozertw.client.recipes import Registry
    say("registered", Registry(session, path).register(name, value), name)
    _hold()


def _enter(session: Any, client: Any, path: str, count: str, value: str) -> None:
    from doozertw.client.recipes import DoubleBarrier
    DoubleBarrier(session, path, int(count), value).enter()
    say("entered", value)
    _hold()


def _consume(session: Any, client: Any, path: str) -> None:
    from doozertw.client.recipes import Queue
    queue = Queue(client, path)
    while True:
        say("getting")
        say("got", queue.get().decode())


def _count(session: Any, client: Any, path: str) -> None:
    from doozertw.client.recipes import Counter
    counter = Counter(client, path)
    while True:
        say("committed", counter.add())


def _barrier_wait(session: Any, client: Any, path: str) -> None:
    from doozertw.client.recipes import Barrier
    say("waiting")
    Barrier(client, path).wait()
    say("passed")


def _barrier_set(session: Any, client: Any, path: str) -> None:
    from doozertw.client.recipes import Barrier
    Barrier(client, path).set()
    say("set")
    _hold()


KINDS: dict[str, tuple[bool, Callable[..., None]]] = {
    "election": (True, _election),           # PATH VALUE
    "semaphore": (True, _semaphore),         # PATH N VALUE
    "rwlock": (True, _rw),                   # PATH read|write
    "register": (True, _register),           # PATH NAME VALUE
    "enter": (True, _enter),                 # PATH COUNT VALUE (a DoubleBarrier)
    "consume": (False, _consume),            # PATH (a Queue)
    "count": (False, _count),                # PATH (a Counter)
    "barrier-wait": (False, _barrier_wait),  # PATH
    "barrier-set": (False, _barrier_set),    # PATH
}
"""kind: (needs a session, participant(session, client, path, *args))."""


def main(argv: list[str]) -> None:
    from doozertw.client import BlockingClient
    from doozertw.client.recipes import BlockingSession

    kind, uri, ttl, *args = argv
    needs_session, participant = KINDS[kind]
    client = BlockingClient(uri, suspend_timeout=30.0)
    session = BlockingSession(client, ttl=int(ttl)).start() if needs_session else None
    say("started", session.lease if session is not None else 0)
    participant(session, client, *args)


# --- the test side ----------------------------------------------------------


class Holder:
    """One participant process; its stdout records, collected by a thread."""

    def __init__(self, kind: str, uri: str, ttl: int, args: tuple[Any, ...],
                 stderr: Path) -> None:
        from doozertw.testing.proxy import child_env
        self.kind = kind
        self.stderr = stderr
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self.killed_at: float | None = None
        with open(stderr, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "doozertw.testing.recipe_holders", kind, uri, str(ttl),
                 *map(str, args)], env=child_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=err, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("]\n"):
                with self._lock:
                    self._records.append(json.loads(line))

    def records(self, what: str | None = None) -> list[Record]:
        with self._lock:
            return [r for r in self._records if what is None or r[0] == what]

    def wait_for(self, what: str, timeout: float = 20.0, count: int = 1) -> Record:
        """The ``count``-th record ``what`` (waiting for it); AssertionError,
        with the process's stderr, after ``timeout`` seconds."""
        try:
            found = until(lambda: len(self.records(what)) >= count, timeout,
                          f"{self.kind} to report {what!r}")
        except AssertionError as e:
            raise AssertionError(f"{e}; stderr: {self.stderr.read_text()[-2000:]}") from None
        assert found
        return self.records(what)[count - 1]

    def kill(self) -> float:
        """SIGKILL the process (if alive) and reap it: the time it was dead by."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        if self.killed_at is None:
            self.killed_at = time.monotonic()
        return self.killed_at


class Holders:
    """Starts participant processes for one test and kills them all at its end."""

    def __init__(self, uri: str, ttl: int, logs: Path) -> None:
        self.uri = uri
        self.ttl = ttl
        self.logs = logs
        self.started: list[Holder] = []

    def start(self, kind: str, *args: Any) -> Holder:
        err = self.logs / f"{kind}-{len(self.started)}.err"
        holder = Holder(kind, self.uri, self.ttl, args, err)
        self.started.append(holder)
        return holder

    def kill_all(self) -> None:
        for holder in self.started:
            holder.kill()
        for holder in self.started:
            if holder.proc.stdout is not None:
                holder.proc.stdout.close()


if __name__ == "__main__":
    main(sys.argv[1:])
