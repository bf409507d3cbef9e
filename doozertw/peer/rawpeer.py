"""A blocking, hand-driven peer connection, for probes and attack tests.

``RawPeer(host, port)`` opens a plain TCP socket to a peer port and lets
the caller speak the peer protocol frame by frame: ``hello`` performs the
dialer's side of the handshake (optionally proving a cluster secret and
then tagging every frame, as doozertw.peer.auth says), ``send_frame`` /
``send_payload`` write frames, ``read_frame`` reads one (None at end of
stream), ``closed_by_peer`` waits for the other side to close. It never
retries and never hides what the node answered: it is a test instrument,
not a transport.
"""

from __future__ import annotations

import socket
import time

from doozertw.peer import auth
from doozertw.peer.framing import FrameDecoder, FrameKind, encode_frame, frame_parts
from doozertw.peer.handshake import (
    AUTH_VERSION, PROTOCOL_VERSION, AuthFlags, Hello, Refusal,
)


class RawPeer:
    """One hand-driven dialer connection; see the module docstring."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.decoder = FrameDecoder(1 << 27)
        self.mac_out: auth.FrameMac | None = None
        self.mac_in: auth.FrameMac | None = None
        self.sent = bytearray()      # every byte written, for replay tests

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sent += data
        self.sock.sendall(data)

    def send_frame(self, kind: FrameKind, content: bytes) -> None:
        trailer = self.mac_out.tag(kind, content) if self.mac_out else b""
        self.send_raw(b"".join(frame_parts(kind, content, trailer)))

    def send_payload(self, payload: bytes) -> None:
        self.send_frame(FrameKind.DATA, payload)

    def read_frame(self, timeout: float = 5.0):
        """The next (kind, content), or None once the peer has closed."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                kind, content = frame
                if self.mac_in is not None and kind != FrameKind.REFUSE:
                    content = self.mac_in.open(kind, content)
                return kind, content
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            except socket.timeout:
                raise TimeoutError("no frame from the peer") from None
            if not data:
                return None
            self.decoder.push(data)

    def hello(self, cluster: str, sender: str, recipient: str,
              secret: bytes | None = None, flags: int | None = None):
        """The dialer's handshake: returns the acceptor's Hello (after our
        AUTH when ``secret`` is given and its proof was right), a Refusal,
        or None if it closed. Raises auth.AuthError for a wrong acceptor proof."""
        if flags is None:
            flags = AuthFlags.SECRET if secret is not None else AuthFlags.NONE
        nonce = auth.new_nonce() if flags & AuthFlags.SECRET else b""
        if flags:
            hello = Hello(AUTH_VERSION, cluster, sender, recipient, flags, nonce)
        else:
            hello = Hello(PROTOCOL_VERSION, cluster, sender, recipient)
        self.send_raw(encode_frame(FrameKind.HELLO, hello.encode()))
        frame = self.read_frame()
        if frame is None:
            return None
        kind, content = frame
        if kind == FrameKind.REFUSE:
            return Refusal.decode(content)
        reply = Hello.decode(content)
        if secret is not None:
            facts = auth.transcript(cluster, sender, recipient, nonce, reply.nonce)
            if not auth.check_proof(secret, auth.ACCEPTOR, facts, reply.proof):
                raise auth.AuthError("the acceptor's proof is wrong")
            self.send_frame(FrameKind.AUTH, auth.proof(secret, auth.DIALER, facts))
            self.mac_out, self.mac_in = auth.session_macs(secret, facts, auth.DIALER)
        return reply

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True if the peer closes within ``timeout`` (frames it sends
        meanwhile, such as a REFUSE, are read and dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.read_frame(timeout=deadline - time.monotonic()) is None:
                    return True
            except TimeoutError:
                return False
            except (OSError, auth.AuthError):
                return True
        return False


__all__ = ["RawPeer"]
