"""Limits every front end enforces on what a client may send.

Each default is chosen deliberately (not inherited from Twisted or
protobuf): doozertw stores small, critical data, so a value is capped at
1 MiB and a doozer frame at that plus room for the other fields.

``Limits.from_mapping`` builds a Limits from a config file's ``limits:``
section and rejects unknown keys, wrong types and out-of-range values.
``DEFAULT_QUORUM_TIMEOUT`` is the one home of the quorum wait's default.
"""

import sys
from collections.abc import Mapping

import attrs

MIB = 1024 * 1024
GIB = 1024 * MIB

#: Seconds a write or linearizable read waits for a quorum before failing
#: with "no quorum" (``--quorum-timeout``, ``quorum_timeout:`` in YAML).
DEFAULT_QUORUM_TIMEOUT = 5.0


class LimitsError(ValueError):
    """A ``limits:`` setting is unknown, of the wrong type or out of range;
    the message is one line naming the file and the key."""


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
    - ``request_send_timeout``: seconds a client may take to finish sending
      a request it has begun; a stalled partial request closes the
      connection (``request_timeout`` is its deprecated YAML spelling).
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
    - ``max_txn_ops``: compares plus operations in one transaction.
    - ``max_txn_bytes``: bytes of paths and values in one transaction.
    - ``max_leases``: leases that may exist at once (a grant beyond fails).
    - ``max_lease_ttl``: the longest TTL a lease may be granted, in seconds.
    """

    max_value: int = MIB
    max_path: int = 4096
    max_depth: int = 256
    max_frame: int = MIB + 8192
    max_line: int = 8192
    max_in_flight: int = 1024
    max_watches: int = 64
    request_send_timeout: float = 30.0
    max_output_buffer: int = 16 * MIB
    max_unsent: int = 32 * MIB
    max_batch: int = 64
    max_writes_in_flight: int = 64
    max_connections: int = 10_000
    max_connections_per_address: int = 1_000
    access_failures: int = 5
    access_lockout: float = 1.0
    access_lockout_max: float = 300.0
    max_txn_ops: int = 128
    max_txn_bytes: int = 4 * MIB
    max_leases: int = 100_000
    max_lease_ttl: int = 30 * 86_400

    @classmethod
    def from_mapping(cls, mapping: object, where: str) -> "Limits":
        """A Limits from a config file's ``limits:`` section (None: the
        defaults). Raises LimitsError, one line naming ``where`` and the
        key, for a key that is unknown, a value of the wrong type (sizes
        and counts are integers, ``float`` fields numbers of seconds), one
        outside (0, the key's ceiling in _CEILINGS], or an
        ``access_lockout_max`` below ``access_lockout``."""
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            raise LimitsError(f"{where}: limits must be a mapping of setting: value")
        values = dict(mapping)
        if DEPRECATED_KEY in values:
            warn_deprecated(f"{where}: limits.{DEPRECATED_KEY}", "limits.request_send_timeout")
            if "request_send_timeout" in values:
                raise LimitsError(f"{where}: limits: give request_send_timeout only, "
                                  f"not also its old name {DEPRECATED_KEY}")
            values["request_send_timeout"] = values.pop(DEPRECATED_KEY)
        types = {f.name: f.type for f in attrs.fields(cls)}
        values = {key: _checked(key, value, types, where) for key, value in values.items()}
        limits = cls(**values)
        if limits.access_lockout_max < limits.access_lockout:
            raise LimitsError(f"{where}: limits.access_lockout_max must be at least "
                              f"limits.access_lockout ({limits.access_lockout:g})")
        return limits


#: The old name of ``request_send_timeout``, still read from YAML files.
DEPRECATED_KEY = "request_timeout"

_SECONDS = "a number of seconds"

#: The largest value each setting accepts; anything above is a mistake
#: (a unit slip or a missing decimal point), not a tuning.
_CEILINGS = {
    "max_value": GIB, "max_path": MIB, "max_depth": 65_536, "max_frame": 2 * GIB,
    "max_line": 2 * GIB, "max_in_flight": 1_000_000, "max_watches": 1_000_000,
    "request_send_timeout": 86_400.0, "max_output_buffer": 16 * GIB,
    "max_unsent": 16 * GIB, "max_batch": 1_000_000, "max_writes_in_flight": 1_000_000,
    "max_connections": 10_000_000, "max_connections_per_address": 10_000_000,
    "access_failures": 1_000_000, "access_lockout": 86_400.0,
    "access_lockout_max": 7 * 86_400.0, "max_txn_ops": 100_000, "max_txn_bytes": GIB,
    "max_leases": 100_000_000, "max_lease_ttl": 365 * 86_400,
}


def _checked(key: str, value: object, types: dict, where: str) -> int | float:
    """``value`` for setting ``key`` (seconds as a float); LimitsError
    unless it suits the setting."""
    if key not in types:
        raise LimitsError(f"{where}: limits.{key} is not a setting; "
                          f"known: {', '.join(sorted(types))}")
    ceiling = _CEILINGS[key]
    seconds = types[key] in (float, "float")
    kind = _SECONDS if seconds else "an integer"
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (not seconds and isinstance(value, float))):
        raise LimitsError(f"{where}: limits.{key} must be {kind}, not {value!r}")
    if not 0 < value <= ceiling:
        raise LimitsError(f"{where}: limits.{key} must be {kind} above 0 and "
                          f"at most {ceiling:.15g}, not {value!r}")
    return float(value) if kind == _SECONDS else value


def warn_deprecated(old: str, new: str) -> None:
    """One line on stderr: ``old`` still works but ``new`` is its name."""
    print(f"warning: {old} is deprecated; use {new}", file=sys.stderr)
