"""Full-chain propagation: a load change at a node -> the new weight in every Envoy.

Run inside the routing benchmark's "ours" fleet (real node, sidecar, control plane and
two Envoys). Each change opens (or closes) one long streaming request directly on a
node, then four pollers watch the stages concurrently and note when each first shows
it: the sidecar's /metrics (node -> sidecar), the control plane's /snapshot (sidecar ->
control plane), and each Envoy's admin /clusters weight (control plane -> Envoy). The
resolution is the pollers' round trip (a few ms on loopback), stated with the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import percentile


@dataclass(frozen=True)
class Targets:
    """Where to look: the node under test and each stage's read endpoint."""

    node: str
    model: str
    node_url: str
    node_port: int
    sidecar_metrics: str
    control_snapshot: str
    envoy_admins: list[str]


async def _sidecar_running(client: httpx.AsyncClient, t: Targets) -> int | None:
    text = (await client.get(t.sidecar_metrics)).text
    for line in text.splitlines():
        if line.startswith("fleet_model_running{") and f'model="{t.model}"' in line:
            return int(float(line.split()[-1]))
    return None


async def _control_in_flight(client: httpx.AsyncClient, t: Targets) -> int | None:
    body = (await client.get(t.control_snapshot)).json()
    model = body.get("nodes", {}).get(t.node, {}).get("models", {}).get(t.model)
    return None if model is None else int(model["in_flight"])


async def _envoy_weight(client: httpx.AsyncClient, admin: str, t: Targets) -> int | None:
    body = (await client.get(f"{admin}/clusters?format=json")).json()
    for status in body.get("cluster_statuses", []):
        if status["name"] != t.model:
            continue
        for host in status.get("host_statuses", []):
            if host["address"]["socket_address"]["port_value"] == t.node_port:
                return int(host.get("weight", 1))
    return None


async def _first_change(read: Any, want: Any, since: float, within_s: float) -> float | None:
    """Seconds from ``since`` until ``read()`` satisfies ``want``; None if not within_s."""
    while time.perf_counter() - since < within_s:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            if want(await read()):
                return time.perf_counter() - since
        await asyncio.sleep(0.001)
    return None


async def measure(t: Targets, changes: int, gap_s: float = 0.3) -> dict[str, Any]:
    """``changes`` flips of the node between 0 and 1 in flight; per-stage latencies."""
    stages: dict[str, list[float]] = {"sidecar": [], "control": []}
    for i in range(len(t.envoy_admins)):
        stages[f"envoy{i}"] = []
    misses = 0
    body = {
        "model": t.model,
        "stream": True,
        "max_tokens": 100_000,
        "messages": [{"role": "user", "content": "hold a slot"}],
    }
    async with (
        httpx.AsyncClient(timeout=10) as client,
        httpx.AsyncClient(timeout=httpx.Timeout(600, connect=5)) as holder,
    ):
        base = {i: await _envoy_weight(client, a, t) for i, a in enumerate(t.envoy_admins)}
        holding = contextlib.AsyncExitStack()
        for n in range(changes):
            busy = n % 2 == 0
            since = time.perf_counter()
            if busy:  # admitted as soon as the response headers arrive
                await holding.enter_async_context(holder.stream("POST", t.node_url, json=body))
            else:  # closing the stream makes the node release the slot
                await holding.aclose()
            want_load = 1 if busy else 0
            waits = [
                _first_change(lambda: _sidecar_running(client, t), want_load.__eq__, since, 5),
                _first_change(lambda: _control_in_flight(client, t), want_load.__eq__, since, 5),
            ]
            for i, admin in enumerate(t.envoy_admins):

                def moved(v: Any, w: Any = base[i], b: bool = busy) -> bool:
                    return (v != w) if b else (v == w)

                waits.append(
                    _first_change(lambda a=admin: _envoy_weight(client, a, t), moved, since, 5)
                )
            seen = await asyncio.gather(*waits)
            if any(s is None for s in seen):
                misses += 1
            else:
                for name, s in zip(stages, seen, strict=True):
                    stages[name].append(float(s or 0))
            await asyncio.sleep(gap_s)
        await holding.aclose()

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    out: dict[str, Any] = {"changes": changes, "missed": misses, "cumulative_ms": {}}
    for name, vals in stages.items():
        out["cumulative_ms"][name] = {
            "p50": ms(percentile(vals, 50)),
            "p99": ms(percentile(vals, 99)),
        }
    return out
