"""In-memory helpers for testing the web port (StubTreq client, site on a fake clock).

Needs the test extra (treq): it is test support, imported by tests only."""

import json

from treq.testing import StubTreq
from twisted.internet.task import Clock

from doozertw.frontends.access import Secrets
from doozertw.frontends.web import make_web_site
from doozertw.frontends.web.options import WebOptions
from doozertw.limits import Limits

HOST = "doozer.test"
BASE = "http://" + HOST


def make_site(node, secrets=None, limits=None, options=None, reactor=None, **kw):
    """A site on a fake clock whose Host allowlist also has ``doozer.test``."""
    options = options if options is not None else WebOptions(hosts=(HOST,))
    return make_web_site(node, secrets or Secrets(), limits or Limits(),
                         reactor=reactor or Clock(), options=options, **kw)


class Client:
    """Synchronous wrapper over StubTreq: every call returns (status, headers, body)."""

    def __init__(self, site):
        self.site = site
        self.treq = StubTreq(site.resource)

    def call(self, method, path, data=None, headers=None):
        out = []
        d = self.treq.request(method, BASE + path, data=data, headers=headers or {})

        def got(response):
            return response.content().addCallback(
                lambda body: out.append((response.code, response.headers, body)))

        d.addCallback(got)
        errors = []
        d.addErrback(errors.append)
        self.treq.flush()
        if errors:
            errors[0].raiseException()
        assert out, f"no response to {method} {path}"
        return out[0]

    def json(self, method, path, data=None, headers=None):
        code, _, body = self.call(method, path, data, headers)
        return code, json.loads(body)


class Conversation:
    """One HTTP/1.1 connection to a Site over a StringTransport (real Request objects).

    ``host``: the Host header sent; ``peer``/``local``: the client's and
    the server's (IPv4) addresses as (host, port).
    """

    def __init__(self, site, host=HOST, peer=("127.0.0.1", 40000), local=("127.0.0.1", 8000)):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        self.host = host
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", *peer),
                                         hostAddress=IPv4Address("TCP", *local))
        self.protocol = site.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)

    def send(self, method, path, headers=(), body=b""):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body)

    def response(self):
        """(status, headers dict, de-chunked body so far)."""
        raw = self.transport.value()
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            rest = dechunk(rest)
        return status, headers, rest

    def lines(self):
        """The JSON objects of an NDJSON body received so far."""
        return [json.loads(line) for line in self.response()[2].splitlines() if line.strip()]

    def disconnect(self):
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionLost()))


def dechunk(data):
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


class WebSocketConversation:
    """A websocket client speaking raw RFC 6455 frames to the events factory in memory.

    ``via_site``: upgrade through the Site's HTTP channel (Host allowlist,
    connection gate) as a real connection does, instead of the events
    factory directly. ``events`` is the server's EventsProtocol (None if
    the upgrade was refused).
    """

    def __init__(self, site, path="/$events", headers=(), host=HOST, via_site=False,
                 peer=("127.0.0.1", 40001), local=("127.0.0.1", 8000), transport=None):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        self.transport = transport or StringTransport(
            peerAddress=IPv4Address("TCP", *peer), hostAddress=IPv4Address("TCP", *local))
        build = site.buildProtocol if via_site else site.events_factory.buildProtocol
        self.protocol = build(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
        lines += [f"{k}: {v}" for k, v in headers]
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        self.status = int(head.split()[1])
        self.head = head
        self._buffer = rest
        self.transport.clear()
        self.closed_with = None
        inner = getattr(self.protocol, "wrappedProtocol", self.protocol)
        self.events = inner if hasattr(inner, "send_json") else None

    def frames(self):
        """(opcode, payload) of every complete frame received since the last call."""
        self._buffer += self.transport.value()
        self.transport.clear()
        out = []
        while len(self._buffer) >= 2:
            b0, b1 = self._buffer[0], self._buffer[1]
            length, offset = b1 & 0x7F, 2
            if length == 126:
                length, offset = int.from_bytes(self._buffer[2:4], "big"), 4
            elif length == 127:
                length, offset = int.from_bytes(self._buffer[2:10], "big"), 10
            if len(self._buffer) < offset + length:
                break
            out.append((b0 & 0x0F, self._buffer[offset:offset + length]))
            self._buffer = self._buffer[offset + length:]
        return out

    def messages(self):
        """JSON text messages received since the last call (close frames recorded)."""
        out = []
        for opcode, payload in self.frames():
            if opcode == 1:
                out.append(json.loads(payload))
            elif opcode == 8:
                self.closed_with = int.from_bytes(payload[:2], "big") if payload else 1005
        return out

    def send_json(self, body, fragment=None):
        """Send ``body`` as one text message, in frames of ``fragment`` bytes if given."""
        payload = json.dumps(body).encode("utf-8")
        size = fragment or max(len(payload), 1)
        parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        for i, part in enumerate(parts):
            opcode = 0x1 if i == 0 else 0x0
            fin = 0x80 if i == len(parts) - 1 else 0
            self.protocol.dataReceived(_masked_frame(fin | opcode, part))

    def drop(self):
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionLost()))


def _masked_frame(first_byte, payload):
    """A client-to-server frame (masked, as RFC 6455 requires)."""
    mask = b"\x01\x02\x03\x04"
    header = bytes([first_byte])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked
