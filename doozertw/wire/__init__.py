"""The doozer wire format and doozertw's binary codecs: one home, used by
the server, the clients, the bench and the tests.

- ``schema``: doozer's protobuf ``Request``/``Response``, verb numbers and
  event flags.
- ``frames``: the length-prefixed framing, sans I/O (``FrameReader``), and
  frame parsing with clear errors.
- ``binary``: the big-endian primitives (``Writer``/``Reader``) of the Raft
  codec, the peer envelopes and the on-disk records.

This package imports only the standard library and protobuf (and
``doozertw.errors`` for the error codes), so the pure cores may use it.
"""

from doozertw.wire.frames import (
    HEADER_SIZE, LENGTH, FrameError, FrameReader, FrameTooLarge, MalformedFrame, frame,
    frame_body, frame_tagged, parse_request, parse_response, read_responses)
from doozertw.wire.schema import (
    FLAG_DEL, FLAG_SET, VERBS, Request, RequestMessage, Response, ResponseMessage)

__all__ = [
    "FLAG_DEL", "FLAG_SET", "FrameError", "FrameReader", "FrameTooLarge", "HEADER_SIZE",
    "LENGTH", "MalformedFrame", "Request", "RequestMessage", "Response", "ResponseMessage",
    "VERBS", "frame", "frame_body", "frame_tagged", "parse_request", "parse_response",
    "read_responses",
]
