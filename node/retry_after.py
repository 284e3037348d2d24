"""Honest Retry-After: how long until a refused client would likely be admitted.

Service time is an EWMA of recent requests' measured run time (admission to release);
until one has completed, a prior guess stands in. The wait is the backlog ahead divided
by the parallelism, times that service time, clamped to the [1, 120] s HTTP clients honour.

Decode speed (tokens/s of generation, for speed-aware routing) is the same kind of EWMA,
so it lives here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_RETRY_S = 1
MAX_RETRY_S = 120


@dataclass
class ServiceTimeEstimator:
    """EWMA of service time in seconds; ``prior_s`` until the first sample."""

    alpha: float = 0.3
    prior_s: float = 2.0
    ewma_s: float | None = None
    samples: int = 0

    def observe(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        self.samples += 1
        if self.ewma_s is None:
            self.ewma_s = seconds
        else:
            self.ewma_s = self.alpha * seconds + (1 - self.alpha) * self.ewma_s

    @property
    def service_s(self) -> float:
        return self.prior_s if self.ewma_s is None else self.ewma_s

    def retry_after(self, queue_ahead: int, max_in_flight: int) -> int:
        """Seconds until the ``queue_ahead`` waiters and this client would have run."""
        parallel = max(1, max_in_flight)
        wait = self.service_s * (queue_ahead + 1) / parallel
        return clamp_retry_after(wait)


@dataclass
class DecodeSpeedEstimator:
    """EWMA of decode speed: completion tokens per second of generation time, one sample
    per finished request that produced at least one token. ``tps`` is ``None`` until then.

    Reported in /health as ``decode_tps``; the control plane weighs a slow replica down
    against the model's fastest one.
    """

    alpha: float = 0.3
    ewma_tps: float | None = None
    samples: int = 0

    def observe(self, tokens: int, seconds: float) -> None:
        if tokens < 1 or not math.isfinite(seconds) or seconds <= 0:
            return
        rate = tokens / seconds
        if not math.isfinite(rate):
            return
        self.samples += 1
        if self.ewma_tps is None:
            self.ewma_tps = rate
        else:
            self.ewma_tps = self.alpha * rate + (1 - self.alpha) * self.ewma_tps

    @property
    def tps(self) -> float | None:
        return self.ewma_tps


def clamp_retry_after(seconds: float) -> int:
    if not math.isfinite(seconds):
        return MAX_RETRY_S
    return max(MIN_RETRY_S, min(MAX_RETRY_S, math.ceil(seconds)))
