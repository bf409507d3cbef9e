"""Concurrent doozer clients that record a checkable history.

Each ``Worker`` is a thread with its own connection to one node, doing
reads, blind writes and compare-and-set on a small set of keys, every
written value unique. Every call is recorded in the worker's own
``HistoryRecorder`` with ``time.monotonic()`` invoke/complete times (one
clock for all workers: they share the process):

- GET -> ``Read(key)`` with the value, or None for a missing file.
- SET rev=-1 -> ``Write(key, value)``.
- SET rev=r -> ``Cas(key, expected, value)`` where ``expected`` is the value
  the worker saw at rev r (None for r=0). With unique values a rev-CAS is
  the model's value-CAS. REV_MISMATCH is the output False.
- A read that fails or times out is dropped (it changed nothing). A write
  that times out, loses its connection or fails with any error but
  REV_MISMATCH has an unknown outcome: it may yet commit. The worker then
  continues as a new client id (its unknown op stays pending forever) on a
  fresh connection to the next node.

``Workload.run`` drives the workers until told to stop; ``final_reads``
reads every key on every reachable node after the faults so lost
acknowledged writes show up as violations.

``WireClient`` is also what the cluster harness administers the cluster
with: ``claim_voter_slot`` and ``remove_member`` change /ctl/cal and
/ctl/node the way doozer operators do.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any, Callable, Sequence

import attrs

from doozertw.client import BlockingClient, ConnectionLost, WaitTimeout, call
from doozertw.errors import DoozerError, ErrCode
from doozertw.wire import ResponseMessage
from doozertw.testing.history import HistoryRecorder, Operation
from doozertw.testing.linearizability import CheckResult, check
from doozertw.testing.models import Cas, DoozerModel, Read, Write

CLOBBER = -1


class Timeout(Exception):
    """No answer within the request timeout."""


class WireError(Exception):
    """The node answered with a doozer error."""

    def __init__(self, code: int, detail: str = ""):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class WireClient:
    """doozertw.client's BlockingClient as the workload needs it: one node,
    no failover, one request at a time, and errors as data.

    ``call`` returns the node's raw ``Response``; an error code raises
    WireError, no answer within ``timeout`` raises Timeout, a connection
    that cannot be made or is lost under a write raises ConnectionError (an
    OSError; the write's effect is unknown). A read whose connection is
    lost is sent once more on a fresh connection to the same node (the
    BlockingClient's rule; it is still a read within its call). Timeouts
    and lost writes leave the client ``closed``; every later call raises
    OSError. Replies are matched by tag, so a late reply is never taken
    for the answer to a later request.
    """

    def __init__(self, port: int, timeout: float = 2.0,
                 host: str = "127.0.0.1"):
        self.timeout = timeout
        self.closed = False
        self._client = BlockingClient(f"{host}:{port}", connect_timeout=timeout,
                                      suspend_timeout=0.0, retry_delay=0.0)
        try:
            self._client.connect()
        except DoozerError as e:   # ConnectionLost, or ACCESS refused
            self.close()
            raise ConnectionError(f"cannot connect to {host}:{port}: {e}") from None

    def close(self) -> None:
        self.closed = True
        self._client.close()

    def call(self, verb: str, **fields: Any) -> ResponseMessage:
        """One request; its Response. Raises WireError, Timeout or OSError."""
        if self.closed:
            raise OSError("client closed")
        try:
            resp: ResponseMessage = self._client.exchange(call(verb, **fields),
                                                          timeout=self.timeout)
        except WaitTimeout:
            self.close()
            raise Timeout(f"{verb} {fields.get('path', '')}") from None
        except ConnectionLost as e:
            self.close()
            raise ConnectionError(f"{verb}: {e}") from None
        if resp.HasField("err_code"):  # proto2: unset reads as TAG_IN_USE
            raise WireError(resp.err_code, resp.err_detail)
        return resp

    def get(self, path: str) -> tuple[bytes, int]:
        resp = self.call("GET", path=path)
        return bytes(resp.value), resp.rev

    def set(self, path: str, rev: int, value: bytes) -> int:
        return self.call("SET", path=path, rev=rev, value=value).rev


def key_path(prefix: str, index: int) -> str:
    return f"{prefix}/k{index}"


@attrs.define
class WorkloadConfig:
    """What the clients do. Fractions of reads and CAS; the rest writes."""

    workers: int = 8
    keys: int = 12
    prefix: str = "/lin"
    read_fraction: float = 0.4
    cas_fraction: float = 0.3
    timeout: float = 1.5
    seed: int = 0
    think: float = 0.0  # seconds each worker waits between operations


class Worker(threading.Thread):
    """One client thread; ``ports()`` gives the client ports it may use."""

    def __init__(self, index: int, config: WorkloadConfig,
                 ports: Callable[[], Sequence[int]], stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(name=f"worker-{index}", daemon=True)
        self.index = index
        self.config = config
        self.ports = ports
        self.stop = stop
        self.clock = clock
        self.recorder = HistoryRecorder()
        self.rng = random.Random(config.seed * 1000 + index)
        self.generation = 0
        self.seq = 0
        self.node_turn = index
        self.client: WireClient | None = None
        self.seen: dict[str, tuple[bytes | None, int]] = {}
        self.counts = {"ok": 0, "failed": 0, "unknown": 0}

    @property
    def client_id(self) -> str:
        return f"{self.index}.{self.generation}"

    def run(self) -> None:
        while not self.stop.is_set():
            if self.client is None and not self._connect():
                self.stop.wait(0.05)
                continue
            self.step()
            if self.config.think:
                self.stop.wait(self.config.think)
        if self.client is not None:
            self.client.close()

    def _connect(self) -> bool:
        ports = list(self.ports())
        if not ports:
            return False
        port = ports[self.node_turn % len(ports)]
        self.node_turn += 1
        try:
            self.client = WireClient(port, timeout=self.config.timeout)
            return True
        except OSError:
            return False

    def step(self) -> None:
        """Issue one random operation and record it."""
        key = key_path(self.config.prefix, self.rng.randrange(self.config.keys))
        roll = self.rng.random()
        if roll < self.config.read_fraction:
            self._read(key)
        elif roll < self.config.read_fraction + self.config.cas_fraction:
            self._cas(key)
        else:
            self._write(key)

    def _conn(self) -> WireClient:
        """The client; the run loop connects before every operation."""
        assert self.client is not None
        return self.client

    def _value(self) -> bytes:
        self.seq += 1
        return f"w{self.index}-{self.seq}".encode()

    def _read(self, key: str) -> None:
        token = self.recorder.invoke(self.client_id, Read(key), self.clock())
        try:
            value, rev = self._conn().get(key)
        except (WireError, Timeout, OSError):
            self.recorder.failed(token)
            self._lost_connection()
            self.counts["failed"] += 1
            return
        out = value if rev != 0 else None
        self.recorder.ok(token, out, self.clock())
        self.seen[key] = (out, rev)
        self.counts["ok"] += 1

    def _write(self, key: str) -> None:
        value = self._value()
        token = self.recorder.invoke(self.client_id, Write(key, value),
                                     self.clock())
        try:
            rev = self._conn().set(key, CLOBBER, value)
        except (WireError, Timeout, OSError):
            self._unknown(token)
            return
        self.recorder.ok(token, None, self.clock())
        self.seen[key] = (value, rev)
        self.counts["ok"] += 1

    def _cas(self, key: str) -> None:
        expected, rev = self.seen.get(key, (None, 0))
        value = self._value()
        token = self.recorder.invoke(self.client_id, Cas(key, expected, value),
                                     self.clock())
        try:
            new_rev = self._conn().set(key, rev, value)
        except WireError as e:
            if e.code == ErrCode.REV_MISMATCH:
                self.recorder.ok(token, False, self.clock())
                self.seen.pop(key, None)
                self.counts["ok"] += 1
                return
            self._unknown(token)
            return
        except (Timeout, OSError):
            self._unknown(token)
            return
        self.recorder.ok(token, True, self.clock())
        self.seen[key] = (value, new_rev)
        self.counts["ok"] += 1

    def _unknown(self, token: int) -> None:
        self.recorder.unknown(token)
        self.counts["unknown"] += 1
        self.generation += 1
        self.seen.clear()
        if self.client is not None:
            self.client.close()
        self.client = None

    def _lost_connection(self) -> None:
        if self.client is not None and self.client.closed:
            self.client = None


class Workload:
    """A set of workers sharing a stop flag; histories merged on demand."""

    def __init__(self, config: WorkloadConfig,
                 ports: Callable[[], Sequence[int]],
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.ports = ports
        self.clock = clock
        self.stop_flag = threading.Event()
        self.workers = [Worker(i, config, ports, self.stop_flag, clock)
                        for i in range(config.workers)]
        self.final: HistoryRecorder = HistoryRecorder()

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_flag.set()
        for w in self.workers:
            w.join(timeout)

    def run_for(self, seconds: float) -> None:
        self.start()
        time.sleep(seconds)
        self.stop()

    def counts(self) -> dict:
        total = {"ok": 0, "failed": 0, "unknown": 0}
        for w in self.workers:
            for k, v in w.counts.items():
                total[k] += v
        return total

    def completed(self) -> int:
        """Operations recorded so far (acknowledged or unknown)."""
        return sum(w.counts["ok"] + w.counts["unknown"] for w in self.workers)

    def final_reads(self, ports: Sequence[int], attempts: int = 20) -> list:
        """Read every key on every port once the faults are over.

        Retries a port until it answers (up to ``attempts`` times); returns
        the (port, key) pairs that never answered.
        """
        missing = []
        for port in ports:
            for k in range(self.config.keys):
                key = key_path(self.config.prefix, k)
                if not self._final_read(port, key, attempts):
                    missing.append((port, key))
        return missing

    def _final_read(self, port: int, key: str, attempts: int) -> bool:
        for _ in range(attempts):
            token = self.final.invoke(f"final@{port}", Read(key), self.clock())
            try:
                client = WireClient(port, timeout=self.config.timeout)
                try:
                    value, rev = client.get(key)
                finally:
                    client.close()
            except (WireError, Timeout, OSError):
                self.final.failed(token)
                time.sleep(0.1)
                continue
            self.final.ok(token, value if rev else None, self.clock())
            return True
        return False

    def per_client(self) -> dict[str, list[Operation]]:
        """Each worker's history (and the final reads), for reports."""
        out = {f"worker-{w.index}": list(w.recorder.history())
               for w in self.workers}
        out["final"] = list(self.final.history())
        return out

    def history(self) -> list[Operation]:
        ops = [op for ops in self.per_client().values() for op in ops]
        return sorted(ops, key=lambda op: op.call)

    def check(self, timeout: float = 120.0) -> CheckResult:
        return check(self.history(), DoozerModel(), timeout=timeout)


def acknowledged_writes(history: Sequence[Operation]) -> int:
    """Writes and successful CAS whose success the client saw."""
    return sum(1 for op in history
               if op.ret != math.inf and (type(op.input) is Write
                                          or (type(op.input) is Cas
                                              and op.output is True)))


def lost_writes(history: Sequence[Operation]) -> list[str]:
    """Keys whose final reads show nothing although a write was
    acknowledged: the bluntest form of a lost write (the checker catches
    the subtler ones, since final reads are part of the history)."""
    acked = {op.input.key for op in history
             if op.ret != math.inf and (type(op.input) is Write
                                        or (type(op.input) is Cas
                                            and op.output is True))}
    finals = [op for op in history
              if str(op.client).startswith("final@")]
    return sorted({op.input.key for op in finals
                   if op.input.key in acked and op.output is None})


# --- cluster administration over the wire (doozer's /ctl way) ------------------


def cal_slots(client: WireClient) -> list[str]:
    """The names of the /ctl/cal voter slots, in numeric order."""
    slots = []
    offset = 0
    rev = client.call("REV").rev
    while True:
        try:
            slots.append(client.call("GETDIR", path="/ctl/cal", rev=rev,
                                     offset=offset).path)
        except WireError as e:
            if e.code in (8, 22):  # RANGE: no more entries; NOENT: no dir
                break
            raise
        offset += 1
    return sorted(slots, key=lambda s: (len(s), s))


def remove_member(client: WireClient, name: str) -> bool:
    """Delete every /ctl/cal slot holding ``name`` and its
    /ctl/node/<name>/member key (doozertw.cluster.admin's ``remove``);
    True once done."""
    for slot in cal_slots(client):
        value, slot_rev = client.get(f"/ctl/cal/{slot}")
        if value == name.encode():
            client.call("DEL", path=f"/ctl/cal/{slot}", rev=slot_rev)
    _, member_rev = client.get(f"/ctl/node/{name}/member")
    if member_rev:
        client.call("DEL", path=f"/ctl/node/{name}/member", rev=member_rev)
    return True


def claim_voter_slot(client: WireClient, name: str) -> bool:
    """CAS ``name`` into the first empty /ctl/cal/N, or a new slot after
    the last; True once it holds one, False if it lost a race (retry)."""
    slots = cal_slots(client)
    for slot in slots:
        value, slot_rev = client.get(f"/ctl/cal/{slot}")
        if value == name.encode():
            return True
    for slot in slots:
        value, slot_rev = client.get(f"/ctl/cal/{slot}")
        if value == b"":
            try:
                client.set(f"/ctl/cal/{slot}", slot_rev, name.encode())
                return True
            except WireError as e:
                if e.code != 5:  # REV_MISMATCH: someone else took it
                    raise
                return False
    numbers = [int(slot) for slot in slots if slot.isdigit()]
    try:
        client.set(f"/ctl/cal/{max(numbers, default=-1) + 1}", 0, name.encode())
    except WireError as e:
        if e.code != 5:
            raise
        return False
    return True
