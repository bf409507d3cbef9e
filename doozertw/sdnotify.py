"""systemd's notify protocol, without a dependency.

Under a ``Type=notify`` unit systemd sets ``NOTIFY_SOCKET``: a unix
datagram socket (a path, or an abstract name written with a leading
``@``). The node sends it ``READY=1`` once it serves (the point its
``serving`` line is logged), ``STATUS=...`` lines saying what it does,
``STOPPING=1`` when it begins to shut down, and, with ``WatchdogSec=``
(systemd then sets ``WATCHDOG_USEC`` and ``WATCHDOG_PID``), ``WATCHDOG=1``
every ``WATCHDOG_USEC / 2`` microseconds from the reactor: a wedged
reactor stops the pings and systemd restarts the node.

Nothing is sent, and nothing is scheduled, when ``NOTIFY_SOCKET`` is unset
or empty. A send that fails (the socket went away) is logged once and
never raised: the node keeps serving.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

MAX_STATUS = 512
"""STATUS= text is cut to this many characters (one line)."""


def socket_address(name: str) -> str | bytes:
    """The sendto() address of ``NOTIFY_SOCKET`` value ``name``: a path as
    is, ``@abstract`` as a NUL-prefixed abstract name."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode("utf-8")
    return name


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``WATCHDOG_USEC``), or
    None: no watchdog, it is for another process (``WATCHDOG_PID``), or the
    values do not parse."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000


class Notifier:
    """Sends notify messages to ``environ['NOTIFY_SOCKET']``; ``enabled``
    is False (every method does nothing) when it is unset. ``clock``
    (default: the reactor) runs the watchdog; ``pid`` is this process's id
    (``WATCHDOG_PID`` is compared with it)."""

    log = Logger()

    def __init__(self, environ: Mapping[str, str] | None = None, clock: Any = None,
                 pid: int | None = None) -> None:
        environ = os.environ if environ is None else environ
        name = environ.get("NOTIFY_SOCKET", "")
        self.address = socket_address(name) if name else None
        self.interval = watchdog_interval(environ, os.getpid() if pid is None else pid)
        self._clock = clock
        self._watchdog: LoopingCall | None = None
        self._failed = False
        self.sent = 0
        self.is_ready = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of ``fields`` (``KEY=value``), newline-separated;
        True if it was sent."""
        if self.address is None:
            return False
        payload = "\n".join(fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self.address)
        except OSError as e:
            if not self._failed:
                self._failed = True
                self.log.warn("systemd notify socket {address!r}: {error}",
                              address=self.address, error=str(e))
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        """READY=1 (and STATUS=``status`` if given)."""
        self.is_ready = True
        return self.send("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        return self.send(*self._status(text))

    def stopping(self, status: str = "stopping") -> bool:
        """STOPPING=1 (the unit is deactivating) and a STATUS line."""
        return self.send("STOPPING=1", *self._status(status))

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")

    def start_watchdog(self) -> bool:
        """Ping every ``interval`` seconds (at once first); False if there
        is no watchdog or no socket."""
        if self.address is None or self.interval is None or self._watchdog is not None:
            return False
        if self._clock is None:
            from twisted.internet import reactor
            self._clock = reactor
        self._watchdog = LoopingCall(self.ping)
        self._watchdog.clock = self._clock
        self._watchdog.start(self.interval, now=True)
        return True

    def stop_watchdog(self) -> None:
        call, self._watchdog = self._watchdog, None
        if call is not None and call.running:
            call.stop()

    @staticmethod
    def _status(text: str) -> list[str]:
        if not text:
            return []
        line = " ".join(text.split())[:MAX_STATUS]
        return [f"STATUS={line}"]


class NotifyService(service.Service):
    """The notifier's life under twistd: the watchdog and (unless the node
    is ready already) a STATUS line on start; STOPPING=1 first thing on
    stop (put this service last in its parent: a MultiService stops its
    children in reverse order, and starts them in order, so the node's
    ports may listen, and ``serving`` run, before this one starts).
    ``serving(line)`` is READY=1 with the node's serving line."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def startService(self) -> None:
        super().startService()
        if not self.notifier.is_ready:
            self.notifier.status("starting")
        self.notifier.start_watchdog()

    def serving(self, line: str) -> None:
        self.notifier.ready(line)

    def stopService(self) -> None:
        super().stopService()
        # the watchdog keeps pinging while the node drains (until the reactor stops)
        self.notifier.stopping("stopping: draining clients, handing over leadership")
