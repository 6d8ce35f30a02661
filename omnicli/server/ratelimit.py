"""A token bucket: the per-connection request rate limit of `omni server`.

Pure: the time is passed in. The bucket holds at most `burst` tokens and refills at
`rate` tokens per second; each request takes one, and a request that finds the bucket
empty is refused (error 429) without being handled. A request whose answer is costly
(a long `session_list`) is charged more afterwards (`charge`).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RATE = 20.0  # requests per second, sustained
DEFAULT_BURST = 40  # requests at once after a quiet spell


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float = -1.0  # -1: start full
    stamp: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        if self.tokens < 0:
            self.tokens = float(self.burst)

    def take(self, now: float) -> bool:
        """Take one token at time `now`; False when none is left (the request is refused)."""
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        if self.stamp is None or now > self.stamp:
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def charge(self, amount: float) -> None:
        """Take `amount` more tokens for a request that cost more than one (a long answer);
        the bucket may go below zero, down to -burst, and refills from there."""
        self.tokens = max(-float(self.burst), self.tokens - amount)

    def retry_after(self) -> float:
        """Seconds until one token is back."""
        return max(0.0, (1.0 - self.tokens) / self.rate)
