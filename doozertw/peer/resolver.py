"""Host name lookups that never hold up the node's exit.

Peers are dialed by host name (``tcp:host=n2:port=7046``). Twisted's
reactor resolves a name with ``getaddrinfo`` in its own thread pool, and
joins that pool's threads when it shuts down. A lookup that blocks -- in
a compose network, the resolver forwards the name of a container that is
gone to an upstream server it cannot reach, and ``getaddrinfo`` waits
about 30 s per name -- then held up the exit of a node whose ports and
links had already closed: cancelling the dial does not stop the thread.

``DaemonResolver`` runs each lookup on a daemon thread of its own, which
nothing joins: at shutdown the process exits with the lookup unfinished,
and a result that arrives once the dial was cancelled is ignored. It is
bounded: one thread per distinct (name, port, family, socket type) in
flight -- a second request for a name being looked up waits for the same
answer -- and at most ``max_lookups`` of them; a request beyond that
fails at once (no address: the dial fails with a DNS error and backs off).

``install_daemon_resolver(reactor)`` makes it the reactor's name resolver
(``reactor.resolve``, ``connectTCP`` to a name, ``HostnameEndpoint``);
``doozertw.tap`` does so for the node's process.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Callable, Sequence

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
)
from twisted.logger import Logger
from zope.interface import implementer

log = Logger(namespace="doozertw.peer")

MAX_LOOKUPS = 32

_FAMILIES = {
    frozenset([IPv4Address]): socket.AF_INET,
    frozenset([IPv6Address]): socket.AF_INET6,
}
_SOCKET_TYPES = {"TCP": socket.SOCK_STREAM, "UDP": socket.SOCK_DGRAM}
_ADDRESS_TYPES = {socket.AF_INET: IPv4Address, socket.AF_INET6: IPv6Address}
_TRANSPORTS = {socket.SOCK_STREAM: "TCP", socket.SOCK_DGRAM: "UDP"}


@implementer(IHostResolution)
@attrs.define(eq=False)
class _Resolution:
    """One request; ``cancel`` drops its receiver (never called after)."""

    name: str
    _drop: Callable[[], None] = lambda: None

    def cancel(self) -> None:
        self._drop()


def start_daemon_thread(target: Callable[[], None], name: str) -> None:
    """Run ``target`` on a new daemon thread (neither Twisted nor the
    interpreter waits for it at exit)."""
    threading.Thread(target=target, name=name, daemon=True).start()


@implementer(IHostnameResolver)
class DaemonResolver:
    """An IHostnameResolver whose lookups run on unjoined daemon threads.

    ``reactor`` delivers results (``callFromThread``); ``getaddrinfo`` and
    ``start_thread(target, name)`` are the lookup and the way to run it
    (parameters for tests); ``max_lookups`` bounds the lookups in flight.
    Receivers are called in the reactor thread only.
    """

    def __init__(self, reactor, max_lookups: int = MAX_LOOKUPS,
                 getaddrinfo: Callable = socket.getaddrinfo,
                 start_thread: Callable[[Callable[[], None], str], None] = start_daemon_thread):
        if max_lookups < 1:
            raise ValueError("max_lookups must be at least 1")
        self._reactor = reactor
        self.max_lookups = max_lookups
        self._getaddrinfo = getaddrinfo
        self._start_thread = start_thread
        self._pending: dict[tuple, list[Any]] = {}
        self.refused = 0

    @property
    def in_flight(self) -> int:
        """Lookups started whose answer has not arrived yet."""
        return len(self._pending)

    def resolveHostName(self, resolutionReceiver: Any, hostName: str,
                        portNumber: int = 0, addressTypes: Sequence | None = None,
                        transportSemantics: str = "TCP"):
        """See IHostnameResolver.resolveHostName."""
        family = _FAMILIES.get(frozenset(addressTypes or ()), socket.AF_UNSPEC)
        key = (hostName, portNumber, family, _SOCKET_TYPES[transportSemantics])
        resolution = _Resolution(hostName, lambda: self._drop(key, resolutionReceiver))
        resolutionReceiver.resolutionBegan(resolution)
        waiting = self._pending.get(key)
        if waiting is not None:
            waiting.append(resolutionReceiver)
        elif len(self._pending) >= self.max_lookups:
            self.refused += 1
            log.warn("{count} host name lookups in flight: {host} not looked up",
                     count=len(self._pending), host=hostName)
            resolutionReceiver.resolutionComplete()
        else:
            self._pending[key] = [resolutionReceiver]
            self._start_thread(lambda: self._lookup(key), f"doozer-resolve-{hostName}"[:60])
        return resolution

    def _drop(self, key: tuple, receiver: Any) -> None:
        waiting = self._pending.get(key, [])
        if receiver in waiting:
            waiting.remove(receiver)

    def _lookup(self, key: tuple) -> None:
        """In the lookup's thread: getaddrinfo, then hand over the answer."""
        error = None
        try:
            names = list(self._getaddrinfo(*key))
        except Exception as e:  # gaierror, or anything a resolver may raise
            names, error = [], str(e) or type(e).__name__
        try:
            self._reactor.callFromThread(self._deliver, key, names, error)
        except Exception:  # the reactor is gone: nobody is waiting any more
            pass

    def _deliver(self, key: tuple, names: list, error: str | None = None) -> None:
        if error is not None:
            log.debug("looking up {host} failed: {error}", host=key[0], error=error)
        for receiver in self._pending.pop(key, ()):
            for family, socktype, _proto, _canon, sockaddr in names:
                address_type = _ADDRESS_TYPES.get(family)
                if address_type is not None:
                    receiver.addressResolved(
                        address_type(_TRANSPORTS.get(socktype, "TCP"), *sockaddr))
            receiver.resolutionComplete()


def install_daemon_resolver(reactor, max_lookups: int = MAX_LOOKUPS) -> DaemonResolver | None:
    """Make a DaemonResolver ``reactor``'s name resolver and return it
    (None, and nothing changed, for a reactor without pluggable name
    resolution)."""
    if not IReactorPluggableNameResolver.providedBy(reactor):
        return None
    resolver = DaemonResolver(reactor, max_lookups)
    reactor.installNameResolver(resolver)
    return resolver
