"""Watch registry (pure): who wants to hear about which changes.

A Watch holds a compiled glob and a callback. The registry calls the
callback synchronously, in revision order, for every event whose path the
glob matches, until the watch is cancelled. The registry keeps no queue of
events per watch: memory is bounded by the number of watches, and a slow
consumer is the front end's business (it cancels the watch).

Isolation: the registry is called from ``Store.apply``, which the Raft
driver runs while applying committed entries, so nothing a watcher does may
reach it. A callback that raises ends that watch alone: it is removed, its
owner is told with ``on_error(DoozerError(OTHER))``, the failure is counted
in ``WatchRegistry.failures`` and handed to ``WatchRegistry.report(what,
watch, exc)`` (injected by whoever runs the store; the Node logs it as
``store.watch.failed``), and delivery goes on to the next watch. An
``on_error`` that raises is reported the same way and ignored. Callbacks run synchronously
and must not block: a consumer that cannot keep up must buffer or cancel
(the front ends cancel watches whose output exceeds ``max_output_buffer``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TypeAlias

from doozertw.errors import DoozerError, ErrCode
from doozertw.store.mutation import Event
from doozertw.store.paths import Glob

_ids = itertools.count(1)

Reporter: TypeAlias = "Callable[[str, Watch | None, Exception], object]"
"""``report(what, watch, exc)``: told of a failed callback (watch None: not a watch's)."""


def _ignore(what: str, watch: Watch | None, exc: Exception) -> None:
    """The default reporter: failures are only counted."""


class Watch:
    """A registered interest in changes; ``cancel()`` stops delivery at once."""

    __slots__ = ("id", "glob", "callback", "from_rev", "on_error", "active", "_registry")

    def __init__(self, glob: Glob, callback: Callable[[Event], object], from_rev: int = 1,
                 on_error: Callable[[DoozerError], object] | None = None) -> None:
        self.id = next(_ids)
        self.glob = glob
        self.callback = callback
        self.from_rev = from_rev
        self.on_error = on_error
        self.active = True
        self._registry: WatchRegistry | None = None

    def cancel(self) -> None:
        """Stop delivery at once (idempotent)."""
        if self.active:
            self.active = False
            if self._registry is not None:
                self._registry.remove(self)

    def fail(self, error: DoozerError) -> None:
        """End the watch and tell its owner why (``on_error(error)``), if it is active.

        An exception from ``on_error`` is reported, never raised.
        """
        if self.active:
            registry = self._registry
            self.cancel()
            if self.on_error is not None:
                try:
                    self.on_error(error)
                except Exception as exc:
                    if registry is not None:
                        registry.report("on_error failed", self, exc)

    def deliver(self, event: Event) -> bool:
        """Call the callback; if it raises, fail this watch (see module doc).

        Returns False if the callback raised. Never raises Exception.
        """
        try:
            self.callback(event)
        except Exception as exc:
            if self._registry is not None:
                self._registry.failures += 1
                self._registry.report(f"raised on rev {event.rev} {event.path}", self, exc)
            self.fail(DoozerError(
                ErrCode.OTHER, f"watch ended: its consumer failed ({type(exc).__name__})"))
            return False
        return True

    def __repr__(self) -> str:
        return f"<Watch {self.id} {self.glob.pattern}>"


class WatchRegistry:
    """Watches indexed by exact path where the glob has no wildcard."""

    def __init__(self, report: Reporter = _ignore) -> None:
        self._exact: dict[str, dict[int, Watch]] = {}
        self._wild: dict[int, Watch] = {}
        self.failures = 0
        self.report = report

    def __len__(self) -> int:
        return len(self._wild) + sum(len(ws) for ws in self._exact.values())

    def add(self, watch: Watch) -> None:
        """Register ``watch``; it hears events from now on."""
        watch._registry = self
        literal = watch.glob.literal
        if literal is None:
            self._wild[watch.id] = watch
        else:
            self._exact.setdefault(literal, {})[watch.id] = watch

    def remove(self, watch: Watch) -> None:
        """Forget ``watch`` (a no-op if it is not registered)."""
        literal = watch.glob.literal
        if literal is None:
            self._wild.pop(watch.id, None)
            return
        ws = self._exact.get(literal)
        if ws is not None:
            ws.pop(watch.id, None)
            if not ws:
                del self._exact[literal]

    def all(self) -> list[Watch]:
        """Every registered watch."""
        return list(self._wild.values()) + [w for ws in self._exact.values() for w in ws.values()]

    def notify(self, event: Event) -> None:
        """Deliver ``event`` to every active watch whose glob matches its path.

        Never raises Exception: a failing watch is ended (``Watch.deliver``).
        """
        path = event.path
        exact = list(self._exact.get(path, {}).values())
        wild = list(self._wild.values())
        for watch in exact:
            if watch.active and event.rev >= watch.from_rev:
                watch.deliver(event)
        for watch in wild:
            if watch.active and event.rev >= watch.from_rev and watch.glob.match(path):
                watch.deliver(event)
