"""Draining the client port on shutdown.

``DrainingClientPortFactory`` is a ClientPortFactory that remembers its
open connections. ``drain(grace)`` (after the port stopped listening):

- a connection that has not sent a byte yet is closed at once;
- every other one stops reading (its read gate is held for DRAIN, so what
  the client sends from now on is not taken) and closes (the replies
  already made written first) as soon as nothing but parked requests is
  left in flight: WAITs, watches and reads of future revisions, which
  could wait forever, get no answer; the client sees its connection close,
  as when a node dies, and its client library fails over and asks another
  node (an error reply would be taken for the request's answer). Whether
  a connection is quiet is checked at once and then every ``POLL``
  seconds;
- after ``grace`` seconds whatever is still open is closed (the replies
  already made are written first).

The Deferred ``drain`` returns fires once every connection is gone or the
grace is over, whichever is first; no new connection is accepted once
draining.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from doozertw.frontends.client_port import ClientPortFactory

DRAIN = "drain"
"""The read-gate reason that holds a draining connection's input."""

DRAIN_GRACE = 2.0
"""Seconds in-flight requests get to finish on shutdown."""

POLL = 0.02
"""Seconds between two looks at the connections still busy."""


class DrainingClientPortFactory(ClientPortFactory):
    """A ClientPortFactory whose connections can be drained (see the module
    docstring); ``connections`` holds the open ones."""

    log = Logger()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[Any] = set()
        self.draining = False
        self._drained: defer.Deferred[None] | None = None

    def buildProtocol(self, addr: Any) -> Any:
        if self.draining:
            return None
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.connections.add(protocol)
            lost = protocol.connectionLost

            def connection_lost(reason: Any = None) -> None:
                self._forget(protocol)
                lost(reason)
            protocol.connectionLost = connection_lost
        return protocol

    def _forget(self, protocol: Any) -> None:
        self.connections.discard(protocol)
        if self._drained is not None and not self.connections:
            self._done()

    def drain(self, grace: float = DRAIN_GRACE) -> defer.Deferred[None]:
        """Drain every open connection (see the module docstring)."""
        if self._drained is not None:
            return self._drained
        self.draining = True
        self._drained = defer.Deferred()
        count = len(self.connections)
        if count:
            self.log.info("client port: draining {count} connections (up to {grace:g}s)",
                          count=count, grace=grace)
        for protocol in list(self.connections):
            _hold(protocol)
        self._deadline = self.clock.seconds() + grace
        self._look()
        return self._drained

    def _look(self) -> None:
        """Close the quiet connections; look again in POLL s until none is
        left or the grace is over."""
        self._poll = None
        for protocol in list(self.connections):
            if _quiet(protocol):
                _close(protocol, "shutting down: drained")
        if not self.connections:
            self._done()
        elif self.clock.seconds() >= self._deadline:
            self._grace_over()
        else:
            delay = min(POLL, max(0.0, self._deadline - self.clock.seconds()))
            self._poll = self.clock.callLater(delay, self._look)

    def _grace_over(self) -> None:
        left = list(self.connections)
        self.log.warn("client port: {count} connections still busy after the drain "
                      "grace; closing them", count=len(left))
        for protocol in left:
            _close(protocol, "shutting down: drain grace over")
        self._done()

    def _done(self) -> None:
        poll, self._poll = getattr(self, "_poll", None), None
        if poll is not None and poll.active():
            poll.cancel()
        d = self._drained
        if d is not None and not d.called:
            d.callback(None)


def _connection(protocol: Any) -> Any:
    """The ClientConnection of a SniffingProtocol's chosen protocol, or None."""
    return getattr(getattr(protocol, "chosen", None), "_conn", None)


def _hold(protocol: Any) -> None:
    """Read nothing more from ``protocol``'s client."""
    conn = _connection(protocol)
    if conn is not None and not conn.closed:
        conn.pause(DRAIN)


def _quiet(protocol: Any) -> bool:
    """Nothing but parked requests (WAITs, watches, future reads) is in
    flight on ``protocol`` (always true before its first byte). Reads the
    chosen protocol's ``_pending`` and ``_parked`` (DoozerProtocol: tags of
    every request, writes included; TextProtocol: Deferreds of its reads,
    its writes being counted in ``_writes_pending``); a protocol without
    them is quiet once ``all_answered()``. (The protocols could say this
    themselves; until they do, this is the one place that knows.)"""
    chosen = getattr(protocol, "chosen", None)
    if chosen is None:
        return True
    pending = getattr(chosen, "_pending", None)
    parked = getattr(chosen, "_parked", None)
    if pending is None or parked is None:
        return bool(chosen.all_answered())
    if getattr(chosen, "_writes_pending", None):
        return False
    return all(request in parked for request in pending)


def _close(protocol: Any, why: str) -> None:
    conn = _connection(protocol)
    if conn is not None:
        conn.close(why)
    elif protocol.transport is not None:
        protocol.transport.loseConnection()
