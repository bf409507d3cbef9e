"""An in-memory network for client tests: DoozerClients talk to real Nodes
through real DoozerProtocols over iosim pumps, on one task.Clock.

``MemNet(clock)`` maps addresses ("host:port") to Nodes (``servers``; one
Node may serve several addresses, which makes failover between them
deterministic). Give ``net.connector`` to a ``DoozerClient`` as its
``connector``. Nothing moves until ``flush()`` (bytes, until quiet) or
``run(seconds)`` (the clock in steps, flushing after each).

- ``kill(address)``: the address's connections drop (their unsent bytes
  are lost) and it refuses new ones; ``down`` is the set of refusing
  addresses (clear it to bring them back).
- ``settle(net, d)``: flush and return what ``d`` fired with (raising its
  failure); AssertionError if it did not fire.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.test import iosim

from doozertw.client.protocol import DoozerClientProtocol
from doozertw.frontends.access import Secrets
from doozertw.frontends.doozer import DoozerProtocol
from doozertw.limits import Limits


class MemNet:
    """In-memory servers by address; see the module docstring."""

    def __init__(self, clock: Clock, secrets: Secrets | None = None,
                 limits: Limits | None = None) -> None:
        self.clock = clock
        self.servers: dict[str, Any] = {}
        self.down: set[str] = set()
        self.pumps: list[Any] = []
        self.secrets = secrets if secrets is not None else Secrets()
        self.limits = limits if limits is not None else Limits()

    def connector(self, address: object) -> defer.Deferred[DoozerClientProtocol]:
        """A connected client protocol to ``address`` (refused if it is
        down or unknown)."""
        key = str(address)
        if key in self.down or key not in self.servers:
            return defer.fail(ConnectionRefusedError(key))
        server = DoozerProtocol(self.servers[key], self.secrets, self.limits, self.clock)
        client = DoozerClientProtocol()
        pump = iosim.connect(server, iosim.makeFakeServer(server), client,
                             iosim.makeFakeClient(client), greet=False, clock=self.clock)
        pump.address = key
        self.pumps.append(pump)
        return defer.succeed(client)

    def flush(self) -> None:
        """Move bytes both ways until every pump is quiet."""
        while any([pump.flush() for pump in list(self.pumps)]):
            pass

    def kill(self, address: str) -> None:
        """Drop ``address``'s connections (losing bytes in flight) and refuse new ones."""
        self.down.add(address)
        for pump in self.pumps:
            if pump.address == address:
                pump.clientIO.stream = []
                pump.serverIO.stream = []
                pump.serverIO.loseConnection()
        self.flush()
        self.pumps = [p for p in self.pumps if p.address != address]

    def run(self, seconds: float, step: float = 0.1) -> None:
        """Advance the clock by ``seconds`` in steps, moving bytes after each."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.flush()


def outcomes(d: defer.Deferred[Any]) -> list[Any]:
    """A list that gets the outcome of ``d`` (a result or a Failure)."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def settle(net: MemNet, d: Any) -> Any:
    """Flush ``net`` and return ``d``'s result (a coroutine is wrapped);
    raises its failure, or AssertionError if it did not fire."""
    if not isinstance(d, defer.Deferred):
        d = defer.ensureDeferred(d)
    out = outcomes(d)
    net.flush()
    assert out, "deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]
