"""The life of one client-port connection, shared by the doozer and text protocols.

States (``ConnState``) and the only transitions allowed:

    OPEN --client half-closes--> DRAINING
    OPEN / DRAINING --we close or abort--> CLOSING
    OPEN / DRAINING / CLOSING --transport lost--> CLOSED (final)

- OPEN: requests are read and answered.
- DRAINING: the client sent all it will. What may wait forever (WAITs,
  watches, reads of future revisions) was abandoned on entry; every other
  request is still answered; once nothing is left the connection closes.
- CLOSING: we asked the transport to close (``loseConnection``, after the
  replies already made) or to abort (dropping them); nothing more is read
  or written.
- CLOSED: the transport is gone; the protocol released everything.

Events that do not apply in the current state (a half-close while closing,
a second loss) are ignored; a transition outside the table raises
InvalidTransition. Every transition is logged at debug level with
structured fields (kind, peer, old, new, why).

The same object is the connection's read gate: reading is paused while any
reason holds it (``pause``/``release``: the output is full, too many
requests in flight, the reactor turn is used up, ...), and it measures the
bytes written since the transport said its output was full.

The protocol that owns it (a ``ConnectionOwner``) supplies what differs:
how to abandon waiting requests, whether all is answered, what to write
before closing, and how to read buffered input again.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

from twisted.logger import Logger

from doozertw.frontends.interface import NodeAPI
from doozertw.nodelay import tune_tcp
from doozertw.limits import Limits

OUTPUT, IN_FLIGHT, WRITES, TURN = "output", "in-flight", "writes", "turn"
"""Reasons that pause reading: the transport's output is full; too many
replies, or writes, outstanding; the connection's reactor turn is over."""


class ConnState(enum.Enum):
    OPEN = "open"
    DRAINING = "draining"
    CLOSING = "closing"
    CLOSED = "closed"


_ALLOWED = {
    ConnState.OPEN: {ConnState.DRAINING, ConnState.CLOSING, ConnState.CLOSED},
    ConnState.DRAINING: {ConnState.CLOSING, ConnState.CLOSED},
    ConnState.CLOSING: {ConnState.CLOSED},
    ConnState.CLOSED: set(),
}


class InvalidTransition(RuntimeError):
    """A connection was asked to move between states that are not connected."""


class ConnectionOwner(Protocol):
    """The protocol a ClientConnection serves (DoozerProtocol, TextProtocol)."""

    def abandon_parked(self) -> None:
        """The client half-closed: answer and cancel what may wait forever."""

    def all_answered(self) -> bool:
        """True once nothing is left to answer (or to read from the buffer)."""

    def before_close(self) -> None:
        """About to close: write the replies already made; stop timers."""

    def read_more(self) -> None:
        """Reading is free again after a turn ended: handle buffered input."""


class ClientConnection:
    """State, read gate and output measure of one client-port connection.

    ``kind`` ("doozer", "text") names the protocol in log lines; ``clock``
    schedules the next reactor turn. The node counts the connection from
    ``made`` to ``lost``.
    """

    log = Logger()

    def __init__(self, kind: str, owner: ConnectionOwner, node: NodeAPI,
                 limits: Limits, clock: Any) -> None:
        self.kind = kind
        self.state = ConnState.OPEN
        self.input_ended = False
        """The client half-closed (stays true once the connection closes)."""
        self.paused_by: set[str] = set()
        self.output_full = False
        self.unsent = 0
        """Bytes written since the output became full (0 while it is not)."""
        self.transport: Any = None
        self._owner = owner
        self._node = node
        self._limits = limits
        self._clock = clock
        self._counted = False
        self._turn_call: Any = None

    # -- states --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Nothing more is read or written (CLOSING or CLOSED)."""
        return self.state in (ConnState.CLOSING, ConnState.CLOSED)

    def move(self, new: ConnState, why: str) -> None:
        """Enter ``new``; InvalidTransition if the table does not allow it."""
        old = self.state
        if new not in _ALLOWED[old]:
            raise InvalidTransition(f"{self.kind} connection: {old.value} -> {new.value}")
        self.state = new
        self.log.debug("{kind} client {peer}: {old} -> {new} ({why})", kind=self.kind,
                       peer=self.peer(), old=old.value, new=new.value, why=why)

    def made(self, transport: Any) -> None:
        """The connection is up: count it; the owner becomes the transport's
        push producer (so that a full output pauses reading)."""
        self.transport = transport
        tune_tcp(transport)
        self._node.connection_opened()
        self._counted = True
        try:
            transport.registerProducer(self._owner, True)
        except RuntimeError:
            self.log.warn("{kind} client: transport already has a producer; "
                          "no output back-pressure for {peer}", kind=self.kind,
                          peer=self.peer())

    def half_closed(self) -> bool:
        """The client sends no more. From OPEN: abandon what may wait forever,
        then close if all is answered; True. In any other state: False."""
        if self.state is not ConnState.OPEN:
            self.input_ended = True
            return False
        self.move(ConnState.DRAINING, "client half-closed")
        self.input_ended = True
        self._owner.abandon_parked()
        self.settle()
        return True

    def settle(self) -> None:
        """While DRAINING: close once the owner has answered everything."""
        if self.state is ConnState.DRAINING and self._owner.all_answered():
            self.close("all answered")

    def close(self, why: str) -> bool:
        """Write what is ready, then close; False if already closing or closed."""
        if self.closed:
            return False
        self._owner.before_close()
        self.move(ConnState.CLOSING, why)
        self._cancel_turn()
        self.transport.loseConnection()
        return True

    def abort(self, why: str) -> bool:
        """Close at once, dropping queued output; False if already closing."""
        if self.closed:
            return False
        self.move(ConnState.CLOSING, why)
        self._cancel_turn()
        self.transport.abortConnection()
        return True

    def lost(self) -> bool:
        """The transport is gone: stop counting the connection. True the
        first time; the owner then releases what it holds."""
        if self.state is ConnState.CLOSED:
            return False
        self.move(ConnState.CLOSED, "connection lost")
        self._cancel_turn()
        if self._counted:
            self._counted = False
            self._node.connection_closed()
        return True

    def peer(self) -> str:
        try:
            return str(self.transport.getPeer())
        except Exception:
            return "?"

    # -- the read gate ---------------------------------------------------------

    def pause(self, reason: str) -> None:
        """Stop reading for ``reason`` (one of OUTPUT, IN_FLIGHT, WRITES, TURN)."""
        if not self.paused_by and not self.closed:
            self.transport.pauseProducing()
        self.paused_by.add(reason)

    def release(self, reason: str) -> bool:
        """``reason`` no longer holds reading. True when reading is free again
        (the transport was resumed): the caller handles buffered input."""
        if reason not in self.paused_by:
            return False
        self.paused_by.discard(reason)
        if self.paused_by or self.closed:
            return False
        self.transport.resumeProducing()
        return True

    def end_turn(self) -> None:
        """Read no more this reactor turn (the other connections go first);
        ``owner.read_more()`` runs in the next one."""
        self.pause(TURN)
        if self._turn_call is None:
            self._turn_call = self._clock.callLater(0, self._next_turn)

    def _next_turn(self) -> None:
        self._turn_call = None
        if self.release(TURN):
            self._owner.read_more()

    def _cancel_turn(self) -> None:
        call, self._turn_call = self._turn_call, None
        if call is not None and call.active():
            call.cancel()

    # -- the output side ---------------------------------------------------------

    def output_paused(self) -> None:
        """The transport's buffer is full (it says so on every write while it
        is): pause reading; only the first call starts counting unsent bytes."""
        if self.output_full:
            return
        self.output_full = True
        self.unsent = 0
        self.pause(OUTPUT)

    def output_resumed(self) -> bool:
        """The transport's buffer drained; True if reading is free again."""
        self.output_full = False
        self.unsent = 0
        return self.release(OUTPUT)

    def wrote(self, nbytes: int) -> bool:
        """Count ``nbytes`` written; True once more than ``limits.max_unsent``
        bytes were written while the output was full (the caller aborts)."""
        if not self.output_full:
            return False
        self.unsent += nbytes
        return self.unsent > self._limits.max_unsent


class ConnectionStateView:
    """Read-only views of a protocol's ``_conn`` (a ClientConnection) that
    its parsing and reply paths test on every turn."""

    _conn: "ClientConnection"

    @property
    def _closed(self) -> bool:
        return self._conn.closed

    @property
    def _input_ended(self) -> bool:
        return self._conn.input_ended

    @property
    def _paused_by(self) -> Any:
        return self._conn.paused_by
