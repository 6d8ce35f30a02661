"""Reconnection delays: exponential backoff with jitter.

Pure: the random source is passed in. Delay n is drawn from [d/2, d] with
d = min(cap, base * 2**n) ("equal jitter"): it grows quickly, never hammers a server
that is coming back, and spreads many clients that lost it at the same moment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

BASE = 0.25  # s before the first attempt (at most)
CAP = 4.0  # s between attempts (at most)


@dataclass
class Backoff:
    base: float = BASE
    cap: float = CAP
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        """The delay before the next attempt, in seconds."""
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return float(ceiling / 2 + self.rng.uniform(0, ceiling / 2))

    def reset(self) -> None:
        self.attempt = 0
