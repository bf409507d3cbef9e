"""How a node stops: in order, and with exit status 0 on SIGTERM.

``StopInOrder`` stops a MultiService's children one after the other
(doozertw.tap puts the web port, the client port, which drains, and the
cluster member, which hands over its leadership, in that order).
``stop_cleanly_on_signals`` makes SIGTERM and SIGINT stop the reactor
without twistd re-raising the signal afterwards.
"""

import signal

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

log = Logger()


class StopInOrder(service.MultiService):
    """A MultiService that stops its children one after the other, the
    last added first, each once the previous one's stop has finished (a
    failure is logged and the next one still stops)."""

    log = Logger()

    def stopService(self):
        service.Service.stopService(self)
        d = defer.succeed(None)
        for child in reversed(list(self)):
            d.addCallback(lambda _, child=child: child.stopService())
            d.addErrback(lambda failure, child=child: self.log.failure(
                "stopping {child}", failure, child=type(child).__name__))
        return d


def stop_cleanly_on_signals(reactor, signals=(signal.SIGTERM, signal.SIGINT)):
    """Handle ``signals`` by stopping ``reactor`` (the services stop in
    order: drain, hand over, stop), as Twisted's handlers do, but without
    recording the signal: twistd would otherwise re-raise it after the
    shutdown, and a node that shut down cleanly would end "killed by
    SIGTERM" instead of with exit status 0. A second signal while stopping
    is logged and ignored. Call it once the reactor runs (Twisted installs
    its own handlers while it starts)."""
    stopping = []

    def stop(signum, frame):
        name = signal.Signals(signum).name
        if stopping:
            reactor.callFromThread(log.info, "{signal}: already stopping", signal=name)
            return
        stopping.append(signum)
        reactor.callFromThread(log.info, "{signal}: draining clients, handing over "
                               "leadership, then exiting", signal=name)
        reactor.callFromThread(_stop, reactor)
    for signum in signals:
        signal.signal(signum, stop)


def _stop(reactor):
    from twisted.internet.error import ReactorNotRunning
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass
