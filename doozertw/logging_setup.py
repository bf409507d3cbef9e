"""Log level and log format of a node run by twistd.

``twistd`` builds its log observer itself (``--logfile``, ``--syslog`` or
``--logger DOTTED.NAME``) before the plugin's ``makeService`` runs, and the
observer it builds cannot be changed afterwards. The plugin's options are
parsed first, though, with twistd's own options already parsed and
available as ``options.parent``: ``install(parent, level, fmt)`` (called
from ``doozertw.tap.Options.postOptions``) points twistd's ``logger``
option at ``observer`` below, which twistd then imports and calls. It
builds what twistd would have built (or the ``--logger`` the user gave),
in ``fmt`` (``text`` or ``json``), behind a FilteringLogObserver that
passes events at ``level`` and above.

Levels are mostdb's four, case-insensitive: DEBUG, INFO, WARN (WARNING is
accepted) and ERROR (critical events pass with ERROR). ``json`` writes one
JSON object per line (``twisted.logger.eventAsJSON``, every structured
field kept, plus ``log_text``: the formatted message), with no record
separator, for log shippers. ``json_observer`` is a ready ``--logger``
factory too (JSON on stdout, level from ``DOOZER_LOG_LEVEL``).
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Callable

import attrs
from twisted.logger import (
    FileLogObserver, FilteringLogObserver, ILogObserver, LegacyLogObserverWrapper,
    LogLevel, LogLevelFilterPredicate, eventAsJSON, formatEvent, textFileLogObserver)
from twisted.python.reflect import namedAny

LEVELS = {"DEBUG": LogLevel.debug, "INFO": LogLevel.info, "WARN": LogLevel.warn,
          "WARNING": LogLevel.warn, "ERROR": LogLevel.error}
LEVEL_NAMES = ("DEBUG", "INFO", "WARN", "ERROR")
FORMATS = ("text", "json")
DEFAULT_LEVEL = "INFO"
DEFAULT_FORMAT = "text"
# what ``install`` points twistd's --logger option at
FACTORY = "doozertw.logging_setup.observer"


class LoggingError(ValueError):
    """A log level or format that does not exist, or that cannot apply."""


def level_named(text: str) -> str:
    """The canonical name (DEBUG, INFO, WARN, ERROR) of ``text``, any case;
    LoggingError naming the choices otherwise."""
    name = str(text).strip().upper()
    if name not in LEVELS:
        raise LoggingError(f"log level {text!r}: use one of {', '.join(LEVEL_NAMES)}")
    return "WARN" if name == "WARNING" else name


def format_named(text: str) -> str:
    """``text`` or ``json`` (any case); LoggingError otherwise."""
    name = str(text).strip().lower()
    if name not in FORMATS:
        raise LoggingError(f"log format {text!r}: use text or json")
    return name


def filtered(observer: Any, level: str) -> FilteringLogObserver:
    """``observer`` (a twisted.logger or legacy observer) seeing only the
    events at ``level`` (a name ``level_named`` accepts) and above."""
    if not ILogObserver.providedBy(observer):
        observer = LegacyLogObserverWrapper(observer)
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level_named(level)])
    return FilteringLogObserver(observer, [predicate])


def json_line(event: dict) -> str:
    """One event as one JSON line (no record separator), with ``log_text``."""
    try:
        text = formatEvent(event)
    except Exception:  # formatEvent never raises, but a shipper must see the rest
        text = ""
    return eventAsJSON({**event, "log_text": text}) + "\n"


def json_file_observer(out: IO[str]) -> FileLogObserver:
    """Events to ``out`` as JSON lines (see ``json_line``)."""
    return FileLogObserver(out, json_line)


@attrs.frozen
class Plan:
    """What ``observer`` builds: ``level``, ``fmt``, and twistd's options
    it needs (``logfile``, ``nodaemon``, ``syslog``, ``prefix``; ``logger``:
    the dotted name the user gave twistd's --logger, or None)."""

    level: str = DEFAULT_LEVEL
    fmt: str = DEFAULT_FORMAT
    logfile: str = ""
    nodaemon: bool = False
    syslog: bool = False
    prefix: str = ""
    logger: str | None = None


_plan = Plan()


def install(parent: Any, level: str, fmt: str) -> Plan:
    """Make twistd (whose parsed options are ``parent``, a ServerOptions
    whose ``postOptions`` has not run yet) log through ``observer`` with
    ``level`` and ``fmt``. LoggingError if ``fmt`` is json and twistd was
    told to use --syslog or its own --logger (those choose the format)."""
    global _plan
    given = parent.get("logger")
    if given == FACTORY:  # installed already (options parsed twice)
        given = _plan.logger
    plan = Plan(level=level_named(level), fmt=format_named(fmt),
                logfile=parent.get("logfile") or "", nodaemon=bool(parent.get("nodaemon")),
                syslog=bool(parent.get("syslog")), prefix=parent.get("prefix") or "",
                logger=given)
    if plan.fmt == "json" and (plan.syslog or plan.logger):
        chosen = "--syslog" if plan.syslog else f"--logger {plan.logger}"
        raise LoggingError(f"--log-format json: twistd's {chosen} chooses the format; "
                           "give one of them")
    _plan = plan
    parent["logger"] = FACTORY
    return plan


def observer(plan: Plan | None = None) -> FilteringLogObserver:
    """twistd's log observer factory (see the module docstring): the
    observer of ``plan`` (default: the one ``install`` made)."""
    plan = plan or _plan
    if plan.logger:
        factory: Callable[[], Any] = namedAny(plan.logger)
        return filtered(factory(), plan.level)
    if plan.fmt == "json":
        return filtered(json_file_observer(log_file(plan)), plan.level)
    from twisted.scripts._twistd_unix import UnixAppLogger
    twistd = UnixAppLogger({"logfile": plan.logfile, "nodaemon": plan.nodaemon,
                            "syslog": plan.syslog, "prefix": plan.prefix})
    return filtered(twistd._getLogObserver(), plan.level)


def log_file(plan: Plan) -> IO[str]:
    """Where twistd would write text logs: stdout for ``--logfile -`` or
    in the foreground without --logfile, else the file (``twistd.log`` by
    default), rotated on SIGUSR1 as twistd does."""
    if plan.logfile == "-" or (plan.nodaemon and not plan.logfile):
        return sys.stdout
    from twisted.python.logfile import LogFile
    out = LogFile.fromFullPath(plan.logfile or "twistd.log")
    import signal
    if not signal.getsignal(signal.SIGUSR1):
        def rotate(signum: int, frame: object) -> None:
            from twisted.internet import reactor
            reactor.callFromThread(out.rotate)
        signal.signal(signal.SIGUSR1, rotate)
    return out


def json_observer() -> FilteringLogObserver:
    """A ``twistd --logger doozertw.logging_setup.json_observer`` factory:
    JSON lines on stdout, level from ``DOOZER_LOG_LEVEL`` (default INFO)."""
    level = os.environ.get("DOOZER_LOG_LEVEL") or DEFAULT_LEVEL
    return filtered(json_file_observer(sys.stdout), level)


def text_observer(out: IO[str], level: str) -> FilteringLogObserver:
    """Text lines to ``out`` at ``level`` and above (tests, tools)."""
    return filtered(textFileLogObserver(out), level)
