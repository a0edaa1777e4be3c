"""The reconnect backoff of every list+watch loop (the Reflector, the namespace watch):
client-go's numbers. Pure bookkeeping: the clock and the random source are injected.
"""
from __future__ import annotations

import random
import time


class Backoff:
    """0.8 s doubling to 30 s with full jitter; forgets failures after 2 minutes healthy."""

    def __init__(self, *, initial=0.8, cap=30.0, reset_after=120.0, clock=time.monotonic, rng=random.random):
        self.initial, self.cap, self.reset_after = initial, cap, reset_after
        self._clock, self._rng = clock, rng
        self.failures = 0
        self._healthy_since: float | None = None

    def healthy(self) -> None:
        """The stream is established: a failure `reset_after` seconds or more from now
        (with no failure in between) starts again from `initial`."""
        if self._healthy_since is None:
            self._healthy_since = self._clock()

    def progress(self) -> None:
        """The watch delivered a change: the path works, forget the failures now."""
        self.failures = 0
        self.healthy()

    def next_delay(self) -> float:
        now = self._clock()
        if self._healthy_since is not None and now - self._healthy_since >= self.reset_after:
            self.failures = 0
        self._healthy_since = None
        ceiling = min(self.cap, self.initial * (2 ** self.failures))
        self.failures += 1
        return ceiling * self._rng()
