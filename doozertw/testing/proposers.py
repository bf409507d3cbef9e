"""Test proposers for a Node: stand-ins for a slow consensus round."""

from __future__ import annotations

from twisted.internet import defer


class HeldProposer:
    """Commits nothing until the test releases it: ``release(n)`` applies
    the ``n`` oldest held mutations (default one), ``release_all()`` every
    one, each firing its proposal's Deferred with the store's Outcome."""

    def __init__(self, store):
        self.store = store
        self.held = []

    def propose(self, mutation):
        d = defer.Deferred()
        self.held.append((mutation, d))
        return d

    def release(self, count=1):
        held, self.held = self.held[:count], self.held[count:]
        for mutation, d in held:
            d.callback(self.store.apply(mutation))

    def release_all(self):
        self.release(len(self.held))


__all__ = ["HeldProposer"]
