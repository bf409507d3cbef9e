"""A fault schedule and the loop that applies it to a cluster.

``schedule(count, seed)`` is a pure, seeded plan: ``count`` ``Fault``s, each
a kind, how long the fault is held and how long to let the cluster settle
after it is healed. Kinds come in shuffled rounds so every kind appears once
per round.

``Nemesis(target, plan)`` applies the plan. The target is anything with the
``Cluster`` fault and observation methods (``wait_for_leader``, ``running``,
``pause``/``resume``, ``kill``/``restart``, ``kill_all``/``restart_all``,
``isolate``/``cut``/``heal``, ``wait_writable``, ``wait_serving``); time comes
from injected ``clock`` and ``sleep``, so a test drives it with a fake clock.
Each fault is healed in a ``finally`` before the next is injected, and after
healing the nemesis waits until the cluster takes writes again, has a leader
and every running node answers reads (``recover_timeout``): a cluster that
does not recover fails the run with ``NemesisError``. Every step is appended to
``timeline`` as ``Injection`` records, written into failure reports.

``KILL_ALL`` (``kill-all``) is ``kill -9`` of every node at once, held,
then every node started again with its command (data directories kept):
durable nodes must come back with everything they acknowledged. It is not
part of the default ``ALL_KINDS``; ask for it (``KNOWN_KINDS`` has it).

``STALE_READ_KINDS`` cut the leader's peer links one way or both while its
client port keeps working (the target needs ``cut(src, dst)``): ``mute-leader``
(the leader hears the others but is not heard), ``deafen-leader`` (it is
heard but hears no one), ``asymmetric-leader`` (seeded: some followers do
not hear it, it does not hear the rest), ``isolate-leader`` held long, and
``linger-leader``: the leader is cut off both ways and paused (SIGSTOP) for
the hold, so the others elect a leader and commit while it cannot count
time; it is then resumed still cut off and left to serve clients for
``linger`` seconds before the links heal. docs/testing.md ("Fault runs
that can see stale reads") explains which of them give a broken ReadIndex
a window to serve a stale read.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Sequence

import attrs

PAUSE_LEADER = "pause-leader"
PAUSE_FOLLOWER = "pause-follower"
KILL_LEADER = "kill-leader"
KILL_FOLLOWER = "kill-follower"
ISOLATE_LEADER = "isolate-leader"
ISOLATE_FOLLOWER = "isolate-follower"

MUTE_LEADER = "mute-leader"
DEAFEN_LEADER = "deafen-leader"
ASYMMETRIC_LEADER = "asymmetric-leader"
LINGER_LEADER = "linger-leader"

KILL_ALL = "kill-all"
ALL_NODES = "*"  # the Injection.node of a fault that hits every node

ALL_KINDS = (PAUSE_LEADER, PAUSE_FOLLOWER, KILL_LEADER, KILL_FOLLOWER,
             ISOLATE_LEADER, ISOLATE_FOLLOWER)
PROCESS_KINDS = ALL_KINDS[:4]
# Faults that leave a deposed leader reachable by clients (module docstring).
STALE_READ_KINDS = (LINGER_LEADER, ISOLATE_LEADER, MUTE_LEADER, DEAFEN_LEADER,
                    ASYMMETRIC_LEADER)
# KILL_ALL is not in ALL_KINDS (the default mix): it is only safe for
# durable nodes (an --in-memory cluster killed whole forgets everything).
KNOWN_KINDS = ALL_KINDS + (MUTE_LEADER, DEAFEN_LEADER, ASYMMETRIC_LEADER,
                           LINGER_LEADER, KILL_ALL)


class NemesisError(AssertionError):
    """The cluster did not recover from a fault in time."""


@attrs.frozen
class Fault:
    kind: str
    hold: float
    settle: float


@attrs.define
class Injection:
    """What happened to one fault: times are the nemesis clock's."""

    index: int
    kind: str
    node: str = ""
    injected: float = 0.0
    healed: float | None = None
    recovered: float | None = None
    error: str = ""

    def describe(self) -> str:
        def t(x):
            return "-" if x is None else f"{x:.3f}"
        return (f"#{self.index} {self.kind} {self.node} injected={t(self.injected)}"
                f" healed={t(self.healed)} recovered={t(self.recovered)}"
                + (f" error={self.error}" if self.error else ""))


def schedule(count: int, seed: int, kinds: Sequence[str] = ALL_KINDS,
             hold: tuple[float, float] = (0.5, 1.5),
             settle: tuple[float, float] = (0.3, 1.0)) -> list[Fault]:
    """A seeded plan of ``count`` faults; same seed, same plan."""
    if not kinds:
        raise ValueError("no fault kinds")
    unknown = set(kinds) - set(KNOWN_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}")
    rng = random.Random(seed)
    plan: list[Fault] = []
    while len(plan) < count:
        round_ = list(kinds)
        rng.shuffle(round_)
        for kind in round_[:count - len(plan)]:
            plan.append(Fault(kind, rng.uniform(*hold), rng.uniform(*settle)))
    return plan


class Nemesis:
    """Applies a plan to a target, one fault at a time."""

    def __init__(self, target, plan: Sequence[Fault], *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 recover_timeout: float = 15.0, seed: int = 0,
                 should_stop: Callable[[], bool] = lambda: False,
                 linger: float = 1.5):
        self.target = target
        self.linger = linger
        self.plan = list(plan)
        self.clock = clock
        self.sleep = sleep
        self.recover_timeout = recover_timeout
        self.rng = random.Random(seed)
        self.should_stop = should_stop
        self.timeline: list[Injection] = []

    @property
    def injected(self) -> int:
        return sum(1 for i in self.timeline if i.node)

    def run(self) -> list[Injection]:
        """Apply every fault (until ``should_stop``); returns the timeline."""
        for index, fault in enumerate(self.plan):
            if self.should_stop():
                break
            self.apply(index, fault)
        return self.timeline

    def apply(self, index: int, fault: Fault) -> Injection:
        record = Injection(index, fault.kind)
        self.timeline.append(record)
        leader = self.target.wait_for_leader(timeout=self.recover_timeout)
        record.node = self._victim(fault.kind, leader)
        record.injected = self.clock()
        try:
            self._inject(fault.kind, record.node)
            self.sleep(fault.hold)
        finally:
            self._heal(fault.kind, record.node)
            record.healed = self.clock()
        self._recover(record)
        self.sleep(fault.settle)
        return record

    def _victim(self, kind: str, leader: str) -> str:
        if kind == KILL_ALL:
            return ALL_NODES
        if kind.endswith("-leader"):
            return leader
        followers = sorted(n for n in self.target.running() if n != leader)
        if not followers:
            raise NemesisError(f"{kind}: no follower running")
        return self.rng.choice(followers)

    def _inject(self, kind: str, node: str) -> None:
        action = kind.split("-")[0]
        if kind == KILL_ALL:
            self.target.kill_all()
        elif action == "pause":
            self.target.pause(node)
        elif action == "kill":
            self.target.kill(node)
        elif kind in _LINKS_CUT:
            for src, dst in _LINKS_CUT[kind](node, self._others(node), self.rng):
                self.target.cut(src, dst)
        elif kind == LINGER_LEADER:
            self.target.isolate(node)
            self.target.pause(node)
        else:
            self.target.isolate(node)

    def _heal(self, kind: str, node: str) -> None:
        action = kind.split("-")[0]
        if kind == KILL_ALL:
            self.target.restart_all()
        elif action == "pause":
            self.target.resume(node)
        elif action == "kill":
            self.target.restart(node)
        elif kind == LINGER_LEADER:
            try:  # resumed still cut off: it believes it leads a while
                self.target.resume(node)
                self.sleep(self.linger)
            finally:
                self.target.heal()
        else:
            self.target.heal()

    def _others(self, node: str) -> list[str]:
        return sorted(n for n in self.target.running() if n != node)

    def _recover(self, record: Injection) -> None:
        try:
            self.target.wait_writable(timeout=self.recover_timeout)
            self.target.wait_for_leader(timeout=self.recover_timeout)
            self.target.wait_serving(timeout=self.recover_timeout)
        except AssertionError as e:
            record.error = str(e)[:500]
            raise NemesisError(f"cluster did not recover after "
                               f"{record.describe()}") from e
        record.recovered = self.clock()


def _mute(node: str, others: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """The node hears the others but none hears it."""
    return [(node, other) for other in others]


def _deafen(node: str, others: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """Everyone hears the node; it hears no one."""
    return [(other, node) for other in others]


def _asymmetric(node: str, others: list[str],
                rng: random.Random) -> list[tuple[str, str]]:
    """A seeded split of the others: the first part does not hear the
    node, the node does not hear the rest (each part non-empty when there
    are two others or more)."""
    shuffled = list(others)
    rng.shuffle(shuffled)
    split = max(1, len(shuffled) // 2)
    return ([(node, other) for other in shuffled[:split]]
            + [(other, node) for other in shuffled[split:]])


# kind -> the directed (src, dst) links it cuts, from (victim, others, rng)
_LINKS_CUT: dict[str, Callable[[str, list[str], random.Random],
                               list[tuple[str, str]]]] = {
    MUTE_LEADER: _mute, DEAFEN_LEADER: _deafen, ASYMMETRIC_LEADER: _asymmetric}
