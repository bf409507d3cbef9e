"""In-memory helpers for testing the web port (StubTreq client, site on a fake clock)."""

import json

from treq.testing import StubTreq
from twisted.internet.task import Clock

from doozertw.frontends.access import Secrets
from doozertw.frontends.web import make_web_site
from doozertw.limits import Limits

BASE = "http://doozer.test"


def make_site(node, secrets=None, limits=None, **kw):
    return make_web_site(node, secrets or Secrets(), limits or Limits(), reactor=Clock(), **kw)


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
    """One HTTP/1.1 connection to a Site over a StringTransport (real Request objects)."""

    def __init__(self, site):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol = site.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)

    def send(self, method, path, headers=()):
        lines = [f"{method} {path} HTTP/1.1", "Host: doozer.test"]
        lines += [f"{k}: {v}" for k, v in headers]
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))

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
    """A websocket client speaking raw RFC 6455 frames to the events factory in memory."""

    def __init__(self, site, path="/$events", headers=()):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40001))
        self.protocol = site.events_factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        lines = [f"GET {path} HTTP/1.1", "Host: doozer.test", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
        lines += [f"{k}: {v}" for k, v in headers]
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        self.status = int(head.split()[1])
        self._buffer = rest
        self.transport.clear()
        self.closed_with = None

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

    def send_json(self, body):
        payload = json.dumps(body).encode("utf-8")
        mask = b"\x01\x02\x03\x04"
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.protocol.dataReceived(header + mask + masked)

    def drop(self):
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionLost()))
