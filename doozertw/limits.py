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
    - ``max_depth``: components in a path (``/a/b`` has 2); a deeper path
      is BAD_PATH. Front ends pass it to ``store.check_path``.
    - ``max_frame``: bytes in one doozer protobuf frame (after the length).
    - ``max_line``: bytes in one text-protocol command line.
    - ``max_in_flight``: requests a connection may have unanswered; beyond
      it the connection is read no further until answers drain (WAITs count).
    - ``max_watches``: streaming watches one connection may hold open.
    - ``request_timeout``: seconds a client may take to finish sending a
      request it has begun; a stalled partial request closes the connection.
    - ``max_output_buffer``: bytes queued for a slow reader before its
      streaming watches are cancelled with an error.
    - ``max_unsent``: bytes of replies a client port connection may have
      queued after its transport's buffer filled (its reading is paused from
      then on); past it the connection is aborted and the queue dropped.
    - ``max_batch``: requests of one client port connection handled per
      reactor turn before the other connections get theirs.
    - ``max_writes_in_flight``: writes (SET, DEL, NOP) a client port
      connection may have unanswered before it is read no further.
    - ``max_connections`` / ``max_connections_per_address``: open client
      port connections in all / from one source address; more are closed
      at once.
    - ``access_failures``: failed ACCESS attempts from one address before
      further attempts are refused unchecked for ``access_lockout`` seconds,
      doubling with each later failure up to ``access_lockout_max``.
    """

    max_value: int = MIB
    max_path: int = 4096
    max_depth: int = 256
    max_frame: int = MIB + 8192
    max_line: int = 8192
    max_in_flight: int = 1024
    max_watches: int = 64
    request_timeout: float = 30.0
    max_output_buffer: int = 16 * MIB
    max_unsent: int = 32 * MIB
    max_batch: int = 64
    max_writes_in_flight: int = 64
    max_connections: int = 10_000
    max_connections_per_address: int = 1_000
    access_failures: int = 5
    access_lockout: float = 1.0
    access_lockout_max: float = 300.0
