"""Seeded open-loop traces: Poisson arrivals, heavy-tailed prompt and output lengths.

Every policy replays the same trace, so differences between policies come from routing
alone. The trace is a pure function of its parameters (and saved with the results), and
the fleet's capacity is computed from the same node speeds the simulation uses.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Request:
    """One request of a trace (the sim node emits exactly ``output_tokens``)."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class LengthDist:
    """A log-normal length clipped to ``[lo, hi]``: most short, a few very long."""

    median: float
    sigma: float
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if self.median <= 0 or self.sigma < 0 or not 1 <= self.lo <= self.hi:
            raise ValueError(f"bad length distribution {self}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        raw = rng.lognormal(math.log(self.median), self.sigma, n)
        return np.clip(np.rint(raw), self.lo, self.hi).astype(int)

    def mean(self, n: int = 200_000, seed: int = 12345) -> float:
        """Mean of the clipped distribution (Monte Carlo; clipping has no closed form)."""
        return float(self.sample(np.random.default_rng(seed), n).mean())


PROMPT = LengthDist(median=120, sigma=0.9, lo=8, hi=1500)
OUTPUT = LengthDist(median=24, sigma=0.8, lo=2, hi=200)


@dataclass(frozen=True)
class NodeSpec:
    """A sim node's speed and admission settings (the same numbers the node is started with)."""

    name: str
    decode_tps: float
    prefill_tps: float
    max_in_flight: int
    max_queue_depth: int
    max_wait_s: float

    def service_s(self, prompt_tokens: float, output_tokens: float) -> float:
        """How long the sim holds a slot: prefill, then one token per decode step."""
        return prompt_tokens / self.prefill_tps + output_tokens / self.decode_tps

    def ttft_s(self, prompt_tokens: float) -> float:
        return prompt_tokens / self.prefill_tps + 1 / self.decode_tps


def capacity_rps(nodes: list[NodeSpec], prompt: LengthDist, output: LengthDist) -> float:
    """Requests/s the fleet completes when every slot is busy (sum of c_i / E[S_i])."""
    mean_p, mean_o = prompt.mean(), output.mean()
    return sum(n.max_in_flight / n.service_s(mean_p, mean_o) for n in nodes)


def generate(
    *,
    seed: int,
    rate_rps: float,
    duration_s: float,
    prompt: LengthDist = PROMPT,
    output: LengthDist = OUTPUT,
) -> list[Request]:
    """Poisson arrivals at ``rate_rps`` for ``duration_s``."""
    if rate_rps <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    rng = np.random.default_rng(seed)
    expected = rate_rps * duration_s
    gaps = rng.exponential(1 / rate_rps, int(expected + 10 * math.sqrt(expected) + 10))
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < duration_s]
    n = len(arrivals)
    prompts, outputs = prompt.sample(rng, n), output.sample(rng, n)
    return [Request(i, float(arrivals[i]), int(prompts[i]), int(outputs[i])) for i in range(n)]


def save(trace: list[Request], path: Path) -> None:
    """One JSON object per line, so a trace can be replayed or inspected with jq."""
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in trace))


def load(path: Path) -> list[Request]:
    return [Request(**json.loads(line)) for line in path.read_text().splitlines() if line]
