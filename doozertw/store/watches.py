"""Watch registry (pure): who wants to hear about which changes.

A Watch holds a compiled glob and a callback. The registry calls the
callback synchronously, in revision order, for every event whose path the
glob matches, until the watch is cancelled. The registry keeps no queue of
events per watch: memory is bounded by the number of watches, and a slow
consumer is the front end's business (it cancels the watch).
"""

import itertools

_ids = itertools.count(1)


class Watch:
    """A registered interest in changes; ``cancel()`` stops delivery at once."""

    __slots__ = ("id", "glob", "callback", "from_rev", "on_error", "active", "_registry")

    def __init__(self, glob, callback, from_rev=1, on_error=None):
        self.id = next(_ids)
        self.glob = glob
        self.callback = callback
        self.from_rev = from_rev
        self.on_error = on_error
        self.active = True
        self._registry = None

    def cancel(self):
        if self.active:
            self.active = False
            if self._registry is not None:
                self._registry.remove(self)

    def fail(self, error):
        """End the watch and tell its owner why (``on_error(error)``), if it is active."""
        if self.active:
            self.cancel()
            if self.on_error is not None:
                self.on_error(error)

    def __repr__(self):
        return f"<Watch {self.id} {self.glob.pattern}>"


class WatchRegistry:
    """Watches indexed by exact path where the glob has no wildcard."""

    def __init__(self):
        self._exact = {}
        self._wild = {}

    def __len__(self):
        return len(self._wild) + sum(len(ws) for ws in self._exact.values())

    def add(self, watch):
        watch._registry = self
        literal = watch.glob.literal
        if literal is None:
            self._wild[watch.id] = watch
        else:
            self._exact.setdefault(literal, {})[watch.id] = watch

    def remove(self, watch):
        literal = watch.glob.literal
        if literal is None:
            self._wild.pop(watch.id, None)
            return
        ws = self._exact.get(literal)
        if ws is not None:
            ws.pop(watch.id, None)
            if not ws:
                del self._exact[literal]

    def all(self):
        """Every registered watch."""
        return list(self._wild.values()) + [w for ws in self._exact.values() for w in ws.values()]

    def notify(self, event):
        """Call every active watch whose glob matches ``event.path``."""
        path = event.path
        exact = list(self._exact.get(path, {}).values())
        wild = list(self._wild.values())
        for watch in exact:
            if watch.active and event.rev >= watch.from_rev:
                watch.callback(event)
        for watch in wild:
            if watch.active and event.rev >= watch.from_rev and watch.glob.match(path):
                watch.callback(event)
