"""Cluster-secret authentication of peer connections (pure: no Twisted).

Challenge-response, both sides proving knowledge of the cluster secret
``S`` (docs/security.md):

1. dialer -> acceptor: HELLO v2 with a fresh 32-byte nonce ``Nd``;
2. acceptor -> dialer: HELLO v2 with a fresh 32-byte nonce ``Na`` and
   ``HMAC-SHA256(S, "acceptor" | T)``;
3. dialer -> acceptor: AUTH with ``HMAC-SHA256(S, "dialer" | T)``;

where the transcript ``T`` is the length-prefixed cluster name, dialer
name, acceptor name, ``Nd`` and ``Na``. Both nonces make a proof good for
one connection only (no replay); the role label makes an acceptor's proof
useless as a dialer's (no reflection); the names bind the identities the
two sides claim.

Every later frame of direction ``d`` carries a 32-byte tag
``HMAC-SHA256(K_d, counter | kind | content)`` where ``K_d`` is
``HMAC-SHA256(S, "key " + d | T)`` and ``counter`` is a u64 that starts at
0 and counts the frames sent that way: a replayed, reordered, dropped or
altered frame fails its tag.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

NONCE_SIZE = 32
TAG_SIZE = 32
MIN_SECRET = 16

DIALER = b"dialer"
ACCEPTOR = b"acceptor"
_LABEL = b"doozertw peer v2 "
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class AuthError(ValueError):
    """A proof or a frame tag is wrong: the connection must be closed."""


def new_nonce() -> bytes:
    """A fresh random challenge."""
    return os.urandom(NONCE_SIZE)


def transcript(cluster: str, dialer: str, acceptor: str, dialer_nonce: bytes,
               acceptor_nonce: bytes) -> bytes:
    """The handshake facts both proofs and both frame keys are bound to."""
    parts = []
    for item in (cluster.encode("utf-8"), dialer.encode("utf-8"),
                 acceptor.encode("utf-8"), dialer_nonce, acceptor_nonce):
        parts.append(_U16.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def _mac(key: bytes, label: bytes, data: bytes) -> bytes:
    return hmac.new(key, _LABEL + label + b"\0" + data, hashlib.sha256).digest()


def proof(secret: bytes, role: bytes, facts: bytes) -> bytes:
    """The proof of knowing ``secret`` that the side ``role`` sends."""
    return _mac(secret, b"proof " + role, facts)


def check_proof(secret: bytes, role: bytes, facts: bytes, offered: bytes) -> bool:
    """True when ``offered`` is the proof of ``role`` (constant time)."""
    return hmac.compare_digest(proof(secret, role, facts), offered)


def frame_key(secret: bytes, sender_role: bytes, facts: bytes) -> bytes:
    """The key tagging frames sent by the side ``sender_role``."""
    return _mac(secret, b"key " + sender_role, facts)


class FrameMac:
    """Tags (sending side) or checks (receiving side) the frames of one
    direction of one connection; the counter advances with every frame."""

    def __init__(self, key: bytes):
        self._key = key
        self.counter = 0

    def _tag(self, kind: int, content) -> bytes:
        mac = hmac.new(self._key, _U64.pack(self.counter) + bytes((kind,)), hashlib.sha256)
        mac.update(content)
        self.counter += 1
        return mac.digest()

    def tag(self, kind: int, content: bytes) -> bytes:
        """The tag to append to the next frame sent."""
        return self._tag(kind, content)

    def open(self, kind: int, body: bytes) -> bytes:
        """The content of the next frame received (``body`` = content +
        tag); raises AuthError when the tag is wrong."""
        if len(body) < TAG_SIZE:
            raise AuthError("frame too short for its tag")
        view = memoryview(body)
        content, tag = view[:-TAG_SIZE], view[-TAG_SIZE:]
        if not hmac.compare_digest(self._tag(kind, content), tag):
            raise AuthError(f"bad tag on frame {self.counter - 1}")
        return bytes(content)


def session_macs(secret: bytes, facts: bytes, role: bytes) -> tuple[FrameMac, FrameMac]:
    """(outgoing, incoming) FrameMacs for the side ``role``."""
    other = ACCEPTOR if role == DIALER else DIALER
    return (FrameMac(frame_key(secret, role, facts)),
            FrameMac(frame_key(secret, other, facts)))


__all__ = [
    "ACCEPTOR", "AuthError", "DIALER", "FrameMac", "MIN_SECRET", "NONCE_SIZE",
    "TAG_SIZE", "check_proof", "frame_key", "new_nonce", "proof", "session_macs",
    "transcript",
]
