"""What every benchmark shares: per-request outcomes, summaries, and result files.

Results go to ``bench/results/NAME.{json,md,png}`` with the exact command and the machine
they ran on, because numbers from a shared 2-core box only mean something next to that.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Outcome:
    """How one request ended; latencies are None for refusals and errors."""

    id: int
    status: int
    node: str | None
    ttft_s: float | None
    e2e_s: float | None
    output_tokens: int = 0
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.e2e_s is not None

    @classmethod
    def refused(cls, rid: int, reason: str) -> Outcome:
        return cls(id=rid, status=503, node=None, ttft_s=None, e2e_s=None, reason=reason)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile; None for no data (never a made-up zero)."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values), q))


def summarize(outcomes: list[Outcome], duration_s: float) -> dict[str, Any]:
    """p50/p95/p99 latency and TTFT of successes, refusal and error rates, goodput."""
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    ok = [o for o in outcomes if o.ok]
    refused = [o for o in outcomes if o.status == 503]
    e2e = [o.e2e_s for o in ok if o.e2e_s is not None]
    ttft = [o.ttft_s for o in ok if o.ttft_s is not None]
    total = len(outcomes)
    by_node: dict[str, int] = {}
    for o in ok:
        by_node[o.node or "?"] = by_node.get(o.node or "?", 0) + 1

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {
        "requests": total,
        "ok": len(ok),
        "refused": len(refused),
        "errors": total - len(ok) - len(refused),
        "refusal_rate": round(len(refused) / total, 4) if total else None,
        "e2e_ms": {f"p{q}": ms(percentile(e2e, q)) for q in (50, 95, 99)},
        "ttft_ms": {f"p{q}": ms(percentile(ttft, q)) for q in (50, 95, 99)},
        "goodput_rps": round(len(ok) / duration_s, 3),
        "goodput_tokens_per_s": round(sum(o.output_tokens for o in ok) / duration_s, 1),
        "by_node": dict(sorted(by_node.items())),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded, or None when either side is missing (so tables show "n/a")."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def fmt(v: Any) -> str:
    return "n/a" if v is None else str(v)


def machine() -> dict[str, Any]:
    """Where the numbers came from, including how busy the box already was."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def command_line() -> str:
    """The exact command that produced a result (``python -m bench`` or one suite)."""
    stem = Path(sys.argv[0]).stem
    module = "bench" if stem in ("__main__", "bench") else f"bench.{stem}"
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def write_results(name: str, payload: dict[str, Any], markdown: list[str]) -> Path:
    """bench/results/NAME.json and NAME.md; returns the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    body = {"command": command_line(), "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(body, indent=2, default=_jsonable) + "\n")
    head = [
        f"Command: `{body['command']}`  ",
        f"Machine: {body['machine']['cpus']} CPUs, load average at start "
        f"{body['machine']['loadavg_at_start']} (shared with other work), {body['machine']['utc']}",
        "",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join([markdown[0], "", *head, *markdown[1:]]) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class Stopped(SystemExit):
    """A signal asked the whole benchmark run to stop (not one suite's failure)."""


def stop_on_signals() -> None:
    """Turn SIGTERM (and an ignored SIGINT, as in a background job) into SystemExit.

    The suites start their fleet in ``try/finally`` blocks; an exception is what lets
    those stop every child process and free its ports instead of orphaning them.
    """

    def _exit(signum: int, _frame: Any) -> None:
        raise Stopped(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, _exit)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display on benchmark machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
