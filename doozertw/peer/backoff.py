"""Capped exponential backoff with jitter for reconnection attempts.

Pure: the random source is injected.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays before successive reconnection attempts.

    Attempt ``n`` (0-based) has a base of ``min(maximum, initial * 2**n)``;
    the delay is drawn uniformly from ``[base/2, base]`` ("equal jitter"),
    so nodes that lost a peer together do not redial in lock step, and no
    delay is ever below half the base. ``reset()`` starts over at attempt 0
    (called once a connection has come up).
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random):
        if initial <= 0 or maximum < initial:
            raise ValueError("need 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.rng = rng
        self.attempt = 0

    def base(self, attempt: int) -> float:
        """The un-jittered delay of attempt ``attempt``."""
        if attempt >= 64:
            return self.maximum
        return min(self.maximum, self.initial * (2 ** attempt))

    def next_delay(self) -> float:
        """The delay before the next attempt; advances the attempt count."""
        base = self.base(self.attempt)
        self.attempt += 1
        return base / 2 + self.rng.uniform(0, base / 2)

    def reset(self) -> None:
        self.attempt = 0
