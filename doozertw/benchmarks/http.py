"""HTTP rows of the side-by-side benchmark: doozertw's HTTP API against
etcd's JSON gateway, both over HTTP/1.1 keep-alive connections.

- doozertw (``[HTTP /v1/keys]``): ``PUT /v1/keys/bench/kN`` with the raw
  value as the body (``application/octet-stream``: stored byte for byte)
  and ``GET /v1/keys/bench/kN``, a linearizable read answered as JSON, on
  the nodes' web ports;
- etcd (``[etcd JSON gateway]``): ``POST /v3/kv/put`` with
  ``{"key": base64, "value": base64}`` and ``POST /v3/kv/range`` with
  ``{"key": base64}`` (linearizable: ``serializable`` left false) on the
  members' client URLs. etcd 3.4 serves the gateway under ``/v3/`` and
  ``/v3beta/`` (both answer; ``/v3alpha/`` is 404), 3.5 under ``/v3/``.

The load generator is the standard library only: one asyncio event loop
per load process, one ``asyncio.Protocol`` per client connection with one
request in flight, the request's bytes built once per client, and
responses parsed incrementally by ``ResponseParser`` (status line,
headers, a ``Content-Length`` or chunked body that is counted and
discarded, never kept). It imports neither grpc nor twisted, so its
processes may be forked for both systems.

A non-2xx answer, a malformed or oversized answer (a header block over
``MAX_HEAD`` bytes, a body over ``MAX_BODY``), an answer nobody asked
for and a connection lost with a request in flight each count as one
error; after a broken answer or a lost connection the client connects
again (after ``RETRY`` seconds) and goes on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable

DOOZER_API = "HTTP /v1/keys"
ETCD_API = "etcd JSON gateway"
ETCD_GATEWAY = "/v3"            # etcd 3.4 also answers /v3beta; 3.5 only /v3
MAX_HEAD = 64 * 1024            # status line + headers (and chunked trailers)
MAX_BODY = 1024 * 1024          # one response's body, however framed
MAX_CHUNK_LINE = 1024           # one chunk-size line
RETRY = 0.05                    # pause before connecting again after a failure
CONNECT_TIMEOUT = 10.0

Build = Callable[[str, str, str, bytes], bytes]


class BadResponse(ValueError):
    """An answer that is not HTTP/1.x, or larger than the parser's bounds."""


# -- requests (PURE) ----------------------------------------------------------

def doozer_request(host: str, kind: str, path: str, value: bytes) -> bytes:
    """The bytes of a doozertw HTTP API request on ``path`` (``/bench/kN``):
    ``kind`` "write" is a PUT of the raw ``value``, "read" a GET."""
    if kind == "write":
        return (f"PUT /v1/keys{path} HTTP/1.1\r\nHost: {host}\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {len(value)}\r\n\r\n").encode("ascii") + value
    if kind == "read":
        return f"GET /v1/keys{path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii")
    raise ValueError(f"unknown request kind: {kind!r}")


def etcd_request(host: str, kind: str, path: str, value: bytes) -> bytes:
    """The bytes of an etcd JSON gateway request on key ``path``: "write"
    is ``kv/put`` of ``value``, "read" a linearizable ``kv/range``."""
    key = base64.b64encode(path.encode()).decode("ascii")
    if kind == "write":
        doc = {"key": key, "value": base64.b64encode(value).decode("ascii")}
        url = f"{ETCD_GATEWAY}/kv/put"
    elif kind == "read":
        doc, url = {"key": key}, f"{ETCD_GATEWAY}/kv/range"
    else:
        raise ValueError(f"unknown request kind: {kind!r}")
    body = json.dumps(doc, separators=(",", ":")).encode("ascii")
    return (f"POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body


def doozer_endpoints(cluster) -> list[str]:
    """host:port of each doozertw node's web port (DoozerCluster, started)."""
    return [f"127.0.0.1:{port}" for port in cluster.web_ports]


def etcd_endpoints(cluster) -> list[str]:
    """host:port of each etcd member's client URL (EtcdCluster)."""
    return list(cluster.endpoints)


# -- responses (PURE) ---------------------------------------------------------

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER = range(6)


class ResponseParser:
    """Incremental HTTP/1.x response parser for a client that sends no
    HEAD requests. ``feed(data)`` returns (status, close) for every
    response completed by ``data``, ``close`` true when the server will
    close the connection after it (``Connection: close``, or HTTP/1.0
    without keep-alive). 1xx answers are skipped (101 is refused). Bodies
    are counted, not kept: memory stays under ``max_head`` plus one
    ``feed``. Raises BadResponse on anything malformed, a header block
    (or trailer block) over ``max_head`` bytes, a body over ``max_body``
    bytes, or a response framed by the end of the connection (no length:
    not keep-alive). After BadResponse the parser is unusable."""

    def __init__(self, max_head: int = MAX_HEAD, max_body: int = MAX_BODY) -> None:
        self.max_head, self.max_body = max_head, max_body
        self.buf = bytearray()
        self.state = _HEAD
        self.remaining = 0      # bytes left of the body or of the current chunk
        self.body = 0           # chunked: body bytes so far
        self.trailer = 0        # chunked: trailer bytes so far
        self.status = 0
        self.close = False
        self.done: list[tuple[int, bool]] = []

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        self.buf += data
        steps = (self._head, self._body, self._chunk_size, self._chunk_data,
                 self._chunk_end, self._trailer)
        while steps[self.state]():
            pass
        done, self.done = self.done, []
        return done

    def _complete(self) -> bool:
        self.done.append((self.status, self.close))
        self.state = _HEAD
        return True

    def _head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n", 0, self.max_head + 4)
        if end < 0:
            if len(self.buf) > self.max_head:
                raise BadResponse(f"header block over {self.max_head} bytes")
            return False
        head = bytes(self.buf[:end])
        del self.buf[:end + 4]
        lines = head.split(b"\r\n")
        version, status = _status_line(lines[0])
        length, chunked, close = _headers(lines[1:], version)
        self.status, self.close = status, close
        if 100 <= status < 200:
            if status == 101:
                raise BadResponse("101 switching protocols")
            return True                         # informational: the answer follows
        if status in (204, 304):
            return self._complete()
        if chunked:
            self.state, self.body, self.trailer = _CHUNK_SIZE, 0, 0
            return True
        if length is None:
            raise BadResponse("no Content-Length and not chunked")
        if length > self.max_body:
            raise BadResponse(f"body of {length} bytes over {self.max_body}")
        if length == 0:
            return self._complete()
        self.state, self.remaining = _BODY, length
        return True

    def _take(self) -> bool:
        """Discard up to ``remaining`` body bytes; True once none is left."""
        take = min(self.remaining, len(self.buf))
        del self.buf[:take]
        self.remaining -= take
        return self.remaining == 0

    def _body(self) -> bool:
        return self._complete() if self._take() else False

    def _chunk_size(self) -> bool:
        end = self.buf.find(b"\r\n", 0, MAX_CHUNK_LINE + 2)
        if end < 0:
            if len(self.buf) > MAX_CHUNK_LINE:
                raise BadResponse("chunk-size line too long")
            return False
        digits = bytes(self.buf[:end]).split(b";", 1)[0].strip()
        del self.buf[:end + 2]
        if not digits or len(digits) > 8 or digits.strip(b"0123456789abcdefABCDEF"):
            raise BadResponse(f"bad chunk size {digits[:20]!r}")
        size = int(digits, 16)
        self.body += size
        if self.body > self.max_body:
            raise BadResponse(f"chunked body over {self.max_body} bytes")
        self.state, self.remaining = (_CHUNK_DATA, size) if size else (_TRAILER, 0)
        return True

    def _chunk_data(self) -> bool:
        if not self._take():
            return False
        self.state = _CHUNK_END
        return True

    def _chunk_end(self) -> bool:
        if len(self.buf) < 2:
            return False
        if self.buf[:2] != b"\r\n":
            raise BadResponse("chunk not followed by CRLF")
        del self.buf[:2]
        self.state = _CHUNK_SIZE
        return True

    def _trailer(self) -> bool:
        end = self.buf.find(b"\r\n", 0, self.max_head + 2)
        if end < 0 or self.trailer + end > self.max_head:
            if self.trailer + len(self.buf) > self.max_head:
                raise BadResponse(f"trailers over {self.max_head} bytes")
            return False
        del self.buf[:end + 2]
        if end == 0:
            return self._complete()
        self.trailer += end + 2
        return True


def _status_line(line: bytes) -> tuple[bytes, int]:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") \
            or len(parts[1]) != 3 or not parts[1].isdigit():
        raise BadResponse(f"bad status line {line[:40]!r}")
    return parts[0], int(parts[1])


def _headers(lines: list[bytes], version: bytes) -> tuple[int | None, bool, bool]:
    """(Content-Length or None, chunked, close) from the header lines."""
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadResponse(f"bad header line {line[:40]!r}")
        name, value = name.lower(), value.strip()
        if name == b"content-length":
            if not value.isdigit() or len(value) > 18 or length not in (None, int(value)):
                raise BadResponse(f"bad Content-Length {value[:20]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            codings = [c.strip().lower() for c in value.split(b",")]
            if codings[-1] != b"chunked" or any(c not in (b"chunked", b"identity")
                                                for c in codings):
                raise BadResponse(f"unsupported Transfer-Encoding {value[:40]!r}")
            chunked = True
        elif name == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
    if chunked and length is not None:
        raise BadResponse("both Content-Length and chunked")
    return length, chunked, not keep_alive


# -- the load -----------------------------------------------------------------

class Tally:
    """What the clients of one load process measured; answers count only
    before ``deadline`` (a perf_counter time)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.deadline = float("inf")
        self.live: set[Connection] = set()

    def error(self) -> None:
        if time.perf_counter() < self.deadline:
            self.errors += 1


class Connection(asyncio.Protocol):
    """One keep-alive connection that, once ``start`` is called, sends
    ``request`` again as soon as each answer arrives until the tally's
    deadline. ``done`` resolves when the connection is closed; ``failed``
    says whether it ended on an error (not on the deadline or a
    ``Connection: close``)."""

    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request, self.tally = request, tally
        self.parser = ResponseParser()
        self.sent: float | None = None      # perf_counter of the request in flight
        self.failed = False
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.tally.live.add(self)

    def start(self) -> None:
        now = time.perf_counter()
        if now >= self.tally.deadline or self.transport is None:
            self._close()
            return
        self.sent = now
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            answers = self.parser.feed(data)
        except BadResponse:
            self._fail()
            return
        for status, close in answers:
            if self.sent is None:               # an answer to nothing
                self._fail()
                return
            now = time.perf_counter()
            if now < self.tally.deadline:
                if 200 <= status < 300:
                    self.tally.latencies.append(now - self.sent)
                else:
                    self.tally.errors += 1
            self.sent = None
            if close:
                self._close()
                return
        if answers:
            self.start()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sent is not None:
            self.failed = True
            self.tally.error()
            self.sent = None
        self.tally.live.discard(self)
        if not self.done.done():
            self.done.set_result(None)

    def _fail(self) -> None:
        self.failed = True
        self.tally.error()
        self.sent = None
        self.abort()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect(address: str, request: bytes, tally: Tally) -> Connection:
    """A Connection to ``address`` (host:port) for ``request``, not started."""
    host, _, port = address.rpartition(":")
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: Connection(request, tally), host, int(port)),
        CONNECT_TIMEOUT)
    return conn


async def _client(address: str, request: bytes, tally: Tally, conn: Connection) -> None:
    """Run ``conn``, then new connections, until the deadline."""
    while True:
        conn.start()
        await conn.done
        if conn.failed:
            await asyncio.sleep(RETRY)
        while True:
            if time.perf_counter() >= tally.deadline:
                return
            try:
                conn = await connect(address, request, tally)
                break
            except (OSError, asyncio.TimeoutError):
                tally.error()
                await asyncio.sleep(RETRY)


async def load(addresses: list[str], client_ids: list[int], kind: str, seconds: float,
               value_size: int, keys: int, build: Build) -> tuple:
    """Clients ``client_ids`` (client i on ``addresses[i % len]``, key
    ``/bench/k{i % keys}``), one request in flight each, for ``seconds``:
    (count, errors, latencies, elapsed)."""
    value = b"x" * value_size
    tally = Tally()
    plan = [(a, build(a, kind, f"/bench/k{cid % keys}", value))
            for cid in client_ids for a in [addresses[cid % len(addresses)]]]
    try:
        conns = await asyncio.gather(*(connect(a, r, tally) for a, r in plan))
        start = time.perf_counter()
        tally.deadline = start + seconds
        tasks = [asyncio.ensure_future(_client(a, r, tally, c))
                 for (a, r), c in zip(plan, conns)]
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        for task in tasks:
            task.cancel()
    finally:
        for conn in list(tally.live):
            conn.abort()
    return len(tally.latencies), tally.errors, tally.latencies, elapsed


def _guarded(results, run) -> None:
    """Put ``asyncio.run(run)``'s result, or ("error", why), on ``results``."""
    try:
        results.put(asyncio.run(run))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which never waits in vain
        results.put(("error", f"{type(e).__name__}: {e}"))


def doozer_worker(addresses: list[str], client_ids: list[int], kind: str, seconds: float,
                  value_size: int, keys: int, results) -> None:
    """``load`` with doozertw's HTTP API requests (``addresses``: the web
    ports); puts (count, errors, latencies, elapsed) or ("error", why)."""
    _guarded(results, load(addresses, client_ids, kind, seconds, value_size, keys,
                           doozer_request))


def etcd_worker(addresses: list[str], client_ids: list[int], kind: str, seconds: float,
                value_size: int, keys: int, results) -> None:
    """``load`` with etcd JSON gateway requests (``addresses``: the client
    URLs' host:ports); puts (count, errors, latencies, elapsed) or
    ("error", why)."""
    _guarded(results, load(addresses, client_ids, kind, seconds, value_size, keys,
                           etcd_request))
