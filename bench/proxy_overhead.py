"""What Envoy in the path costs: one node, direct vs through Envoy, interleaved.

Two measurements, each ``--requests`` times per path, alternating direct and proxied so
both see the same background load on a shared machine:
- a small non-streaming chat completion (``max_tokens: 1``), whole response;
- a streaming one: time to the first SSE chunk (the node sends it on admission, before
  any token, so this is pure request-path latency).
The node is a fast sim (no queueing). Envoy runs with the control plane's full filter
chain (json_to_metadata body routing, retry policy, local-reply mappers).

    python -m bench.proxy_overhead [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, percentile, pyplot, ratio, stop_on_signals, write_results
from tests.control.control_proc import Control
from tests.control.envoy_harness import Envoy
from tests.procs import ProcGroup, free_port, http_json, wait_until

MODEL = "alpha"
BODY = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}


async def small(client: httpx.AsyncClient, url: str) -> float:
    t0 = time.perf_counter()
    resp = await client.post(url, json=BODY)
    resp.raise_for_status()
    return time.perf_counter() - t0


async def first_chunk(client: httpx.AsyncClient, url: str) -> float:
    t0 = time.perf_counter()
    async with client.stream("POST", url, json={**BODY, "stream": True}) as resp:
        resp.raise_for_status()
        chunks = resp.aiter_raw()
        await anext(chunks)
        elapsed = time.perf_counter() - t0
        async for _ in chunks:  # drain so the connection is reused
            pass
    return elapsed


async def measure(urls: dict[str, str], n: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {
        kind: {path: [] for path in urls} for kind in ("small", "first_chunk")
    }
    async with httpx.AsyncClient(timeout=10) as client:
        for url in urls.values():  # warm up connections and Envoy's route cache
            for _ in range(10):
                await small(client, url)
        for _ in range(n):
            for path, url in urls.items():
                out["small"][path].append(await small(client, url))
                out["first_chunk"][path].append(await first_chunk(client, url))
    return out


def summarize(samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kind, paths in samples.items():
        row: dict[str, Any] = {}
        for path, values in paths.items():
            row[path] = {
                f"p{q}_ms": round((percentile(values, q) or 0) * 1000, 3) for q in (50, 99)
            }
        for q in ("p50_ms", "p99_ms"):
            row[f"ratio_{q[:3]}"] = ratio(row["envoy"][q], row["direct"][q])
            row[f"added_{q}"] = round(row["envoy"][q] - row["direct"][q], 3)
        result[kind] = row
    return result


def run(n: int, work: Path) -> dict[str, dict[str, list[float]]]:
    procs = ProcGroup(work)
    try:
        node_port, listen = free_port(), free_port()
        procs.fleet(
            "node",
            "node",
            "--name",
            "n0",
            "--listen",
            f"127.0.0.1:{node_port}",
            "--model",
            f"{MODEL}=sim",
            "--max-in-flight",
            "64",
            "--sim-decode-tps",
            "10000",
            "--sim-prefill-tps",
            "1000000",
            "--log-level",
            "warning",
        )
        config = work / "fleet.yaml"
        config.write_text(
            f"listener: {{address: 127.0.0.1, port: {listen}}}\n"
            f"models:\n  - id: {MODEL}\n"
            f"nodes:\n  - {{name: n0, address: 127.0.0.1, port: {node_port}, models: [{MODEL}]}}\n"
        )
        direct = f"http://127.0.0.1:{node_port}/v1/chat/completions"
        wait_until(lambda: http_json(direct, BODY)[0] == 200, 30, "the node", on_timeout=procs.logs)
        control = Control(procs, config)
        envoy = Envoy(procs, control.xds_port, node_id="bench-overhead")
        envoy.wait_ready()
        proxied = f"http://127.0.0.1:{listen}/v1/chat/completions"
        wait_until(lambda: http_json(proxied, BODY)[0] == 200, 30, "a 200 through Envoy")
        return asyncio.run(measure({"direct": direct, "envoy": proxied}, n))
    finally:
        procs.stop_all()


def plot(samples: dict[str, dict[str, list[float]]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    titles = {"small": "small non-streaming request", "first_chunk": "stream: first chunk"}
    for ax, (kind, paths) in zip(axes, samples.items(), strict=True):
        for name, values in paths.items():
            ms = sorted(v * 1000 for v in values)
            ax.plot(ms, [i / len(ms) for i in range(len(ms))], label=name)
        ax.set_title(titles[kind])
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_overhead", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="per path and kind")
    args = parser.parse_args(argv)
    stop_on_signals()
    if args.requests < 10:
        parser.error("--requests must be at least 10")
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        samples = run(args.requests, Path(tmp))
    summary = summarize(samples)
    lines = [
        "# Proxy overhead: direct to a node vs through Envoy",
        f"{args.requests} requests per path and kind, interleaved, sequential, one sim node.",
        "",
        "| request | direct p50 / p99 ms | Envoy p50 / p99 ms | ratio p50 / p99 "
        "| added p50 / p99 ms |",
        "|---|---|---|---|---|",
    ]
    for kind, label in (("small", "small, non-streaming"), ("first_chunk", "stream, 1st chunk")):
        r = summary[kind]
        lines.append(
            f"| {label} | {r['direct']['p50_ms']} / {r['direct']['p99_ms']} "
            f"| {r['envoy']['p50_ms']} / {r['envoy']['p99_ms']} "
            f"| {r['ratio_p50']} / {r['ratio_p99']} | {r['added_p50_ms']} / {r['added_p99_ms']} |"
        )
    write_results("proxy_overhead", {"requests": args.requests, "results": summary}, lines)
    plot(samples, RESULTS / "proxy_overhead.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
