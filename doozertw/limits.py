"""Limits every front end enforces on what a client may send.

Each default is chosen deliberately (not inherited from Twisted or
protobuf): doozertw stores small, critical data, so a value is capped at
1 MiB and a doozer frame at that plus room for the other fields.
"""

import attrs

MIB = 1024 * 1024


@attrs.frozen
class Limits:
    """Per-connection and per-request limits.

    - ``max_value``: bytes in one file's value.
    - ``max_path``: bytes in a path or glob.
    - ``max_frame``: bytes in one doozer protobuf frame (after the length).
    - ``max_line``: bytes in one text-protocol command line.
    - ``max_in_flight``: requests a connection may have unanswered; beyond
      it the connection is read no further until answers drain (WAITs count).
    - ``max_watches``: streaming watches one connection may hold open.
    - ``request_timeout``: seconds a client may take to finish sending a
      request it has begun; a stalled partial request closes the connection.
    - ``max_output_buffer``: bytes queued for a slow reader before its
      streaming watches are cancelled with an error.
    """

    max_value: int = MIB
    max_path: int = 4096
    max_frame: int = MIB + 8192
    max_line: int = 8192
    max_in_flight: int = 1024
    max_watches: int = 64
    request_timeout: float = 30.0
    max_output_buffer: int = 16 * MIB
