"""A fault-injecting TCP proxy in front of the peer ports of a test cluster.

Every node's peer address in the cluster file points at a listener of this
proxy; the node itself listens on a private port. Since each node dials
every peer and sends its traffic only over its own outbound connection (see
docs/peer.md), a connection into the listener for node ``dst`` carries the
link ``src -> dst``; the proxy learns ``src`` from the HELLO frame that opens
every peer connection. Rules name directed links (``*`` matches any node):

- ``block SRC DST``: the link is cut. In *blackhole* mode (default) bytes on
  the link are silently discarded in both directions and new connections
  are accepted but go nowhere, like a network that loses every packet; in
  *drop* mode connections on the link are closed and new ones closed right
  after their HELLO, like a host that answers with resets.
- ``unblock SRC DST`` / ``heal``: the link works again. Connections that lost
  bytes while blackholed are closed, so the nodes reconnect cleanly.

The proxy runs as its own process (``python -m doozertw.testing.proxy
ROUTES.json``), so pausing or loading the test process never stalls it. It
prints ``READY <control port>`` once listening. The control port takes one
command per line and answers one line: ``ok``, ``error <why>`` or, for
``status``, a JSON object. ``ProxyProcess`` starts it and ``ProxyControl``
speaks the control protocol.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import struct
import subprocess
import sys
import time

import attrs

import doozertw
from doozertw.peer.framing import FrameKind
from doozertw.peer.handshake import HandshakeError, Hello

ANY = "*"
BLACKHOLE = "blackhole"
DROP = "drop"
MODES = (BLACKHOLE, DROP)
UNKNOWN_SENDER = "?"
_MAX_HELLO = 4096
_LENGTH = struct.Struct(">I")
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(doozertw.__file__)))


def child_env(env: dict | None = None) -> dict:
    """``env`` (default: ours) with this doozertw's directory first on
    PYTHONPATH, so child processes run the code this process imported."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(
        [SOURCE_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


@attrs.frozen
class Route:
    """A proxy listener: connections to ``listen_port`` go to node ``node``
    at ``target_port`` on loopback."""

    node: str
    listen_port: int
    target_port: int


class LinkRules:
    """The set of cut directed links, with ``*`` as a wildcard."""

    def __init__(self):
        self._blocked: set[tuple[str, str]] = set()

    def block(self, src: str, dst: str) -> None:
        self._blocked.add((src, dst))

    def unblock(self, src: str, dst: str) -> None:
        self._blocked.discard((src, dst))

    def heal(self) -> None:
        self._blocked.clear()

    def is_blocked(self, src: str, dst: str) -> bool:
        return any((s in (src, ANY)) and (d in (dst, ANY))
                   for s, d in self._blocked)

    def blocked(self) -> list[tuple[str, str]]:
        return sorted(self._blocked)


def dialer_name(data: bytes) -> str | None:
    """The sender named by the HELLO frame at the start of ``data``.

    Returns None while the frame is incomplete, UNKNOWN_SENDER when the
    bytes are not a peer HELLO (the proxy then forwards them unjudged
    unless a rule with ``*`` as source cuts the link).
    """
    if len(data) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack_from(data, 0)
    if size < 1 or size > _MAX_HELLO:
        return UNKNOWN_SENDER
    if len(data) < _LENGTH.size + size:
        return None
    body = data[_LENGTH.size:_LENGTH.size + size]
    if body[0] != FrameKind.HELLO:
        return UNKNOWN_SENDER
    try:
        return Hello.decode(bytes(body[1:])).sender or UNKNOWN_SENDER
    except HandshakeError:
        return UNKNOWN_SENDER


class _Link:
    """One proxied connection: dialer side and node side."""

    def __init__(self, dst: str, reader, writer):
        self.src = UNKNOWN_SENDER
        self.dst = dst
        self.client_reader, self.client_writer = reader, writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.stalled = False  # bytes were discarded: must not resume
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client_writer, self.upstream_writer):
            if writer is not None:
                writer.close()


class PeerProxy:
    """The asyncio proxy: listeners per route, rules, a control server."""

    def __init__(self, routes: list[Route], mode: str = BLACKHOLE):
        self.routes = routes
        self.rules = LinkRules()
        self.mode = mode
        self.links: set[_Link] = set()
        self.counters = {"connections": 0, "blocked_connections": 0,
                         "bytes_forwarded": 0, "bytes_discarded": 0}
        self._servers: list[asyncio.Server] = []

    async def start(self, control_port: int = 0) -> int:
        """Listen on every route and on the control port; returns it."""
        for route in self.routes:
            server = await asyncio.start_server(
                functools.partial(self._accept, route), "127.0.0.1", route.listen_port)
            self._servers.append(server)
        control = await asyncio.start_server(self._control, "127.0.0.1",
                                             control_port)
        self._servers.append(control)
        return control.sockets[0].getsockname()[1]

    def close(self) -> None:
        for server in self._servers:
            server.close()
        for link in list(self.links):
            link.close()

    # --- rules -----------------------------------------------------------

    def apply(self, line: str) -> str:
        """Execute one control command; returns the reply line."""
        words = line.split()
        if not words:
            return "error empty command"
        cmd, args = words[0].lower(), words[1:]
        if cmd in ("block", "unblock") and len(args) == 2:
            getattr(self.rules, cmd)(*args)
        elif cmd == "heal" and not args:
            self.rules.heal()
        elif cmd == "mode" and len(args) == 1 and args[0] in MODES:
            self.mode = args[0]
        elif cmd == "status" and not args:
            return json.dumps(self.status())
        else:
            return f"error bad command {line.strip()!r}"
        self._enforce()
        return "ok"

    def status(self) -> dict:
        return {"mode": self.mode, "blocked": self.rules.blocked(),
                "links": sorted(f"{link.src}->{link.dst}" for link in self.links),
                **self.counters}

    def _enforce(self) -> None:
        for link in list(self.links):
            blocked = self.rules.is_blocked(link.src, link.dst)
            if blocked and self.mode == DROP:
                link.close()
            elif not blocked and link.stalled:
                link.close()  # it lost bytes: a clean reconnect is needed

    # --- connections -------------------------------------------------------

    async def _accept(self, route: Route, reader, writer) -> None:
        link = _Link(route.node, reader, writer)
        self.links.add(link)
        self.counters["connections"] += 1
        try:
            first = await self._read_hello(link)
            if first is None:
                return
            if self.rules.is_blocked(link.src, link.dst):
                self.counters["blocked_connections"] += 1
                if self.mode == DROP:
                    return
                link.stalled = True
                await self._swallow(link.client_reader)
                return
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", route.target_port)
            link.upstream_writer = up_writer
            up_writer.write(first)
            await asyncio.gather(
                self._pump(link, link.client_reader, up_writer),
                self._pump(link, up_reader, link.client_writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()
            self.links.discard(link)

    async def _read_hello(self, link: _Link) -> bytes | None:
        data = b""
        while True:
            name = dialer_name(data)
            if name is not None:
                link.src = name
                return data
            chunk = await link.client_reader.read(65536)
            if not chunk:
                return None
            data += chunk

    async def _swallow(self, reader) -> None:
        while chunk := await reader.read(65536):
            self.counters["bytes_discarded"] += len(chunk)

    async def _pump(self, link: _Link, reader, writer) -> None:
        try:
            while chunk := await reader.read(65536):
                if link.closed:
                    return
                if self.rules.is_blocked(link.src, link.dst):
                    link.stalled = True
                    self.counters["bytes_discarded"] += len(chunk)
                    continue
                if link.stalled:
                    return
                writer.write(chunk)
                self.counters["bytes_forwarded"] += len(chunk)
                await writer.drain()
        finally:
            link.close()

    async def _control(self, reader, writer) -> None:
        try:
            while line := await reader.readline():
                writer.write((self.apply(line.decode("utf-8", "replace"))
                              + "\n").encode())
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def load_routes(path: str) -> tuple[list[Route], str]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return [Route(**r) for r in data["routes"]], data.get("mode", BLACKHOLE)


async def _serve(path: str) -> None:
    routes, mode = load_routes(path)
    proxy = PeerProxy(routes, mode)
    port = await proxy.start()
    print(f"READY {port}", flush=True)
    await asyncio.Event().wait()


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m doozertw.testing.proxy ROUTES.json")
    asyncio.run(_serve(argv[0]))


class ProxyControl:
    """A blocking client of the control port."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.port = port
        self.timeout = timeout

    def command(self, line: str) -> str:
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=self.timeout) as s:
            s.sendall(line.encode() + b"\n")
            reply = s.makefile("rb").readline().decode().strip()
        if reply.startswith("error"):
            raise ValueError(f"proxy refused {line!r}: {reply}")
        return reply

    def block(self, src: str, dst: str) -> None:
        self.command(f"block {src} {dst}")

    def unblock(self, src: str, dst: str) -> None:
        self.command(f"unblock {src} {dst}")

    def heal(self) -> None:
        self.command("heal")

    def set_mode(self, mode: str) -> None:
        self.command(f"mode {mode}")

    def status(self) -> dict:
        return json.loads(self.command("status"))


class ProxyProcess:
    """The proxy as a child process, configured by a routes file."""

    def __init__(self, routes: list[Route], directory: str,
                 mode: str = BLACKHOLE, python: str = sys.executable,
                 env: dict | None = None):
        self.routes = routes
        self.directory = directory
        self.mode = mode
        self.python = python
        self.env = child_env(env)
        self.process: subprocess.Popen[bytes] | None = None
        self.control: ProxyControl | None = None

    def start(self, timeout: float = 20.0) -> ProxyControl:
        path = os.path.join(self.directory, "proxy-routes.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"mode": self.mode,
                       "routes": [attrs.asdict(r) for r in self.routes]}, f)
        log_path = os.path.join(self.directory, "proxy.log")
        log = open(log_path, "ab")
        self.process = process = subprocess.Popen(
            [self.python, "-m", "doozertw.testing.proxy", path],
            stdout=subprocess.PIPE, stderr=log, env=self.env,
            cwd=self.directory)
        log.close()
        deadline = time.monotonic() + timeout
        assert process.stdout is not None  # stdout=PIPE
        line = process.stdout.readline().decode().strip()
        if not line.startswith("READY ") or time.monotonic() > deadline:
            self.stop()
            with open(log_path, encoding="utf-8", errors="replace") as f:
                raise RuntimeError(f"proxy did not start: {line!r}\n"
                                   f"{f.read()[-2000:]}")
        self.control = ProxyControl(int(line.split()[1]))
        return self.control

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


if __name__ == "__main__":
    main()
