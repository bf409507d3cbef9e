"""Fault injection for the peer transport: drop, delay, duplicate, block.

A ``FaultInjector`` is consulted by a PeerTransport for every payload it
sends (direction OUT, keyed by the recipient) and every payload it
receives (direction IN, keyed by the sender). It answers with the delays
at which copies of that payload go ahead: ``[]`` drops it, ``[0.0]`` lets
it through untouched, two entries duplicate it, a positive entry delays it
(delayed copies may overtake or be overtaken: that models reordering).

Faults act on payloads, not on connections: a blocked peer's connection
stays up and keeps answering pings, but no payload crosses it. Blocking
both directions between two groups of nodes is a network partition as
the consensus layer sees it.

Pure and deterministic: every random choice comes from the injected
``random.Random``; delays are scheduled by the transport on its clock.
"""

from __future__ import annotations

import collections
import enum
import random

import attrs

ANY = "*"


class Direction(enum.Enum):
    OUT = "out"   # payloads this node sends to the peer
    IN = "in"     # payloads this node receives from the peer


def _probability(instance, attribute, value):
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability, not {value}")


def _non_negative(instance, attribute, value):
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative")


@attrs.frozen
class FaultRule:
    """What happens to payloads of one peer in one direction.

    ``drop`` and ``duplicate`` are probabilities; each copy is delayed by
    ``delay`` plus a uniform draw from ``[0, jitter]`` seconds; ``blocked``
    drops everything.
    """

    drop: float = attrs.field(default=0.0, validator=_probability)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    delay: float = attrs.field(default=0.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    blocked: bool = False


def _directions(direction: Direction | None) -> tuple[Direction, ...]:
    return (Direction.OUT, Direction.IN) if direction is None else (direction,)


class FaultInjector:
    """Per-peer, per-direction fault rules (see module docstring).

    A rule for peer ``ANY`` applies to peers that have no rule of their
    own. ``direction=None`` in the setters means both directions.
    ``dropped``, ``duplicated`` and ``delayed`` count decisions per
    (peer, Direction).
    """

    def __init__(self, rng: random.Random | None = None):
        self.rng = rng if rng is not None else random.Random()
        self._rules: dict[tuple[str, Direction], FaultRule] = {}
        self.dropped: collections.Counter[tuple[str, Direction]] = collections.Counter()
        self.duplicated: collections.Counter[tuple[str, Direction]] = collections.Counter()
        self.delayed: collections.Counter[tuple[str, Direction]] = collections.Counter()

    def set_rule(self, peer: str, rule: FaultRule,
                 direction: Direction | None = None) -> None:
        for d in _directions(direction):
            self._rules[(peer, d)] = rule

    def rule_for(self, peer: str, direction: Direction) -> FaultRule | None:
        rule = self._rules.get((peer, direction))
        if rule is None:
            rule = self._rules.get((ANY, direction))
        return rule

    def block(self, peer: str = ANY, direction: Direction | None = None) -> None:
        """Drop every payload to and/or from ``peer`` (ANY: everyone)."""
        self._set_blocked(peer, direction, True)

    def unblock(self, peer: str = ANY, direction: Direction | None = None) -> None:
        self._set_blocked(peer, direction, False)

    def isolate(self) -> None:
        """Cut this node off from every peer, both directions."""
        self.block(ANY)

    def heal(self) -> None:
        """Remove every rule: the network is perfect again."""
        self._rules.clear()

    def _set_blocked(self, peer, direction, blocked) -> None:
        for d in _directions(direction):
            current = self._rules.get((peer, d), FaultRule())
            self._rules[(peer, d)] = attrs.evolve(current, blocked=blocked)

    def decide(self, peer: str, direction: Direction) -> list[float]:
        """Delays (seconds) of the copies of one payload; [] drops it."""
        rule = self.rule_for(peer, direction)
        if rule is None:
            return [0.0]
        key = (peer, direction)
        if rule.blocked or (rule.drop and self.rng.random() < rule.drop):
            self.dropped[key] += 1
            return []
        copies = 1
        if rule.duplicate and self.rng.random() < rule.duplicate:
            copies = 2
            self.duplicated[key] += 1
        delays = [self._delay(rule) for _ in range(copies)]
        if any(delays):
            self.delayed[key] += 1
        return delays

    def _delay(self, rule: FaultRule) -> float:
        if rule.jitter:
            return rule.delay + self.rng.uniform(0, rule.jitter)
        return rule.delay


def partition(injectors: dict[str, FaultInjector], *groups) -> None:
    """Block all traffic between nodes of different groups.

    ``injectors`` maps each node name to its transport's FaultInjector;
    each group is an iterable of node names.
    """
    sets = [set(g) for g in groups]
    for i, group in enumerate(sets):
        others = set().union(*(g for j, g in enumerate(sets) if j != i))
        for name in group:
            for other in others:
                injectors[name].block(other)
