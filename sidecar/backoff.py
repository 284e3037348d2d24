"""Reconnect delays: capped exponential with full jitter, so restarted control planes are
not hit by every sidecar in the same millisecond."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.1
    cap_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got {self.base_s} and {self.cap_s}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry ``attempt`` (0-based): uniform in [base, min(cap, base * 2^n)]."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(max(attempt, 0), 32))
        return (rng or random).uniform(self.base_s, ceiling)
