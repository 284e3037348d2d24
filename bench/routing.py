"""Routing quality, side by side on one trace: Envoy RR, Envoy LEAST_REQUEST, ours, ideal.

The fleet: four sim nodes of one model at decode speeds 1x, 1x, 0.5x, 0.25x with the same
admission settings, behind two Envoys fed by one control plane. Both Envoys bind the
listener port with SO_REUSEPORT (Envoy's default), so the kernel splits client
connections between them as an L4 balancer in front of a real deployment would; each
Envoy sees only its own requests, and the split is read back from their admin stats.

Policies (a) and (b) are the control plane with the nodes listed as static nodes (always
weighted as idle: static equal weights), ROUND_ROBIN / LEAST_REQUEST, no retry on
rejection and no sidecars. Policy (c) is ours: sidecars report load, the control plane
sets weights and health, Envoy retries a rejected request on another replica. Policy (d)
is bench.ideal on the same trace and node speeds.

    python -m bench.routing [--duration 30] [--loads 0.7,0.85,0.95] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import chain_propagation, ideal, workload
from bench.chain_propagation import Targets
from bench.common import (
    RESULTS,
    fmt,
    pyplot,
    ratio,
    stop_on_signals,
    summarize,
    write_results,
)
from bench.loadgen import replay
from bench.workload import NodeSpec
from tests.control.control_proc import Control
from tests.control.envoy_harness import Envoy
from tests.procs import ProcGroup, free_port, http_json, wait_until

MODEL = "alpha"
SPEEDS = (1.0, 1.0, 0.5, 0.25)
BASE_DECODE_TPS = 25.0
BASE_PREFILL_TPS = 2000.0
MAX_IN_FLIGHT, MAX_QUEUE_DEPTH, MAX_WAIT_S = 4, 8, 5.0
POLICIES = ("round_robin", "least_request", "ours")
LABELS = {
    "round_robin": "Envoy ROUND_ROBIN (static)",
    "least_request": "Envoy LEAST_REQUEST (static)",
    "ours": "ours (weights + health + retry)",
    "ideal": "ideal JSQ/SED simulation",
}


def node_specs() -> list[NodeSpec]:
    return [
        NodeSpec(
            f"n{i}",
            BASE_DECODE_TPS * s,
            BASE_PREFILL_TPS * s,
            MAX_IN_FLIGHT,
            MAX_QUEUE_DEPTH,
            MAX_WAIT_S,
        )
        for i, s in enumerate(SPEEDS)
    ]


def sidecars_available() -> bool:
    try:
        return importlib.util.find_spec("sidecar.cli") is not None
    except ImportError:
        return False


def config_yaml(policy: str, listen_port: int, nodes: dict[str, int]) -> str:
    """The operator file for one policy (static nodes for the Envoy baselines)."""
    head = f"listener: {{address: 127.0.0.1, port: {listen_port}}}\n"
    if policy == "ours":
        return head + f"models:\n  - id: {MODEL}\nstale_after_s: 3\n"
    lb = {"round_robin": "ROUND_ROBIN", "least_request": "LEAST_REQUEST"}[policy]
    lines = [
        head + "models:",
        f"  - id: {MODEL}",
        f"    lb_policy: {lb}",
        "    retry_on_rejection: false",
        "nodes:",
    ]
    for name, port in nodes.items():
        lines.append(f"  - {{name: {name}, address: 127.0.0.1, port: {port}, models: [{MODEL}]}}")
    return "\n".join(lines) + "\n"


class Nodes:
    """The four sim nodes, shared by every policy (they keep no state between runs)."""

    def __init__(self, procs: ProcGroup, specs: list[NodeSpec]) -> None:
        self.specs = specs
        self.ports = {s.name: free_port() for s in specs}
        for s in specs:
            procs.fleet(
                s.name,
                "node",
                "--name",
                s.name,
                "--listen",
                f"127.0.0.1:{self.ports[s.name]}",
                "--model",
                f"{MODEL}=sim",
                "--max-in-flight",
                str(s.max_in_flight),
                "--max-queue-depth",
                str(s.max_queue_depth),
                "--max-wait-s",
                str(s.max_wait_s),
                "--sim-decode-tps",
                str(s.decode_tps),
                "--sim-prefill-tps",
                str(s.prefill_tps),
                "--log-level",
                "warning",
            )
        for name in self.ports:
            wait_until(functools.partial(self.loaded, name), 30, f"node {name}")

    def health(self, name: str) -> dict[str, Any]:
        _, _, body = http_json(f"http://127.0.0.1:{self.ports[name]}/health", timeout=2)
        return next(m for m in body["models"] if m["id"] == MODEL)

    def loaded(self, name: str) -> bool:
        return bool(self.health(name)["state"] == "loaded")

    def busy(self) -> int:
        return sum(self.health(n)["in_flight"] + self.health(n)["queue_depth"] for n in self.ports)

    def wait_idle(self, timeout: float = 120) -> None:
        wait_until(lambda: self.busy() == 0, timeout, "every node to be idle", interval=0.2)


def downstream_requests(envoy: Envoy) -> int:
    """Requests this Envoy's public listener received (admin traffic excluded)."""
    text = envoy.admin("/stats?filter=downstream_rq_total")
    total = 0
    for line in text.splitlines():
        m = re.match(r"http\.(\S+)\.downstream_rq_total: (\d+)", line)
        if m and m.group(1) != "admin":
            total += int(m.group(2))
    return total


def run_policy(
    policy: str,
    nodes: Nodes,
    traces: dict[float, list[workload.Request]],
    duration_s: float,
    work: Path,
    chain_changes: int = 0,
) -> tuple[dict[float, dict[str, Any]], dict[str, Any] | None]:
    """Bring up control plane (+ sidecars) + two Envoys for one policy; replay every trace.

    With sidecars (ours) and ``chain_changes``, also time the full propagation chain.
    """
    procs = ProcGroup(work)
    listen = free_port()
    config = work / f"{policy}.yaml"
    config.write_text(config_yaml(policy, listen, nodes.ports))
    out: dict[float, dict[str, Any]] = {}
    chain: dict[str, Any] | None = None
    sidecar_ports = {name: free_port() for name in nodes.ports}
    try:
        control = Control(procs, config)
        if policy == "ours":
            for name, port in nodes.ports.items():
                procs.fleet(
                    f"sidecar-{name}",
                    "sidecar",
                    "--node",
                    f"http://127.0.0.1:{port}",
                    "--listen",
                    f"127.0.0.1:{sidecar_ports[name]}",
                    "--control",
                    f"127.0.0.1:{control.xds_port}",
                    "--log-level",
                    "warning",
                )
        envoys = [Envoy(procs, control.xds_port, node_id=f"bench-envoy-{i}") for i in range(2)]
        for envoy in envoys:
            envoy.wait_ready()
            wait_until(
                lambda e=envoy: len(e.hosts(MODEL)) == len(nodes.ports),  # type: ignore[misc]
                30,
                f"{len(nodes.ports)} endpoints in each Envoy",
                on_timeout=procs.logs,
            )
        url = f"http://127.0.0.1:{listen}/v1/chat/completions"
        for load, trace in traces.items():
            before = [downstream_requests(e) for e in envoys]
            t0 = time.monotonic()
            outcomes = asyncio.run(replay(trace, url, MODEL))
            wall = time.monotonic() - t0
            split = [downstream_requests(e) - b for e, b in zip(envoys, before, strict=True)]
            summary = summarize(outcomes, duration_s)
            summary["envoy_split"] = split
            summary["wall_s"] = round(wall, 1)
            summary["reasons"] = _reasons(outcomes)
            out[load] = summary
            print(f"routing {policy} load={load}: {_line(summary)}", flush=True)
            nodes.wait_idle()
        if policy == "ours" and chain_changes:
            name = nodes.specs[0].name
            targets = Targets(
                node=name,
                model=MODEL,
                node_url=f"http://127.0.0.1:{nodes.ports[name]}/v1/chat/completions",
                node_port=nodes.ports[name],
                sidecar_metrics=f"http://127.0.0.1:{sidecar_ports[name]}/metrics",
                control_snapshot=control.url("/snapshot"),
                envoy_admins=[f"http://127.0.0.1:{e.admin_port}" for e in envoys],
            )
            chain = asyncio.run(chain_propagation.measure(targets, chain_changes))
            print(f"routing chain propagation: {chain}", flush=True)
    finally:
        procs.stop_all()
    return out, chain


def _reasons(outcomes: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            key = f"{o.status} {o.reason}".strip()
            counts[key] = counts.get(key, 0) + 1
    return counts


def _errors(s: dict[str, Any]) -> str:
    """Failures that are not admission refusals (timeouts, resets), shown when present."""
    return f" (+{s['errors']} errors)" if s["errors"] else ""


def _line(s: dict[str, Any]) -> str:
    return (
        f"ok={s['ok']}/{s['requests']} refused={s['refused']} e2e p99={s['e2e_ms']['p99']} ms "
        f"ttft p99={s['ttft_ms']['p99']} ms goodput={s['goodput_rps']} rps"
    )


def headline(results: dict[str, dict[float, dict[str, Any]]], loads: list[float]) -> list[dict]:
    """ours/RR, ours/LEAST_REQUEST, ours/ideal at p99 (e2e and TTFT), per load."""
    rows = []
    ours = results.get("ours", {})
    for load in loads:
        row: dict[str, Any] = {"load": load}
        for other in ("round_robin", "least_request", "ideal"):
            theirs = results.get(other, {}).get(load)
            mine = ours.get(load)
            for metric in ("e2e_ms", "ttft_ms"):
                row[f"{metric[:-3]}_p99_ours_over_{other}"] = (
                    ratio(mine[metric]["p99"], theirs[metric]["p99"]) if mine and theirs else None
                )
        rows.append(row)
    return rows


def markdown(
    results: dict[str, dict[float, dict[str, Any]]],
    ratios: list[dict],
    capacity: float,
    loads: list[float],
    missing: dict[str, str],
) -> list[str]:
    lines = [
        "# Routing quality: same trace, four policies",
        f"Fleet: 4 sim nodes, decode {', '.join(f'{s:g}x' for s in SPEEDS)} of "
        f"{BASE_DECODE_TPS:g} tok/s, {MAX_IN_FLIGHT} slots + queue {MAX_QUEUE_DEPTH} "
        f"(max wait {MAX_WAIT_S:g} s) each; capacity {capacity:.2f} req/s; two Envoys.",
        "",
        "| policy | load | requests | e2e p50/p95/p99 ms | TTFT p50/p95/p99 ms | refused "
        "| goodput req/s | tok/s | per node | Envoy split |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for load in loads:
        for policy in (*POLICIES, "ideal"):
            s = results.get(policy, {}).get(load)
            if s is None:
                continue
            e, t = s["e2e_ms"], s["ttft_ms"]
            lines.append(
                f"| {LABELS[policy]} | {load:.0%} | {s['requests']} "
                f"| {fmt(e['p50'])} / {fmt(e['p95'])} / {fmt(e['p99'])} "
                f"| {fmt(t['p50'])} / {fmt(t['p95'])} / {fmt(t['p99'])} "
                f"| {s['refusal_rate']:.1%}{_errors(s)} | {s['goodput_rps']} "
                f"| {s['goodput_tokens_per_s']} "
                f"| {' '.join(f'{k}:{v}' for k, v in s['by_node'].items())} "
                f"| {fmt(s.get('envoy_split'))} |"
            )
    lines += [
        "",
        "## Headline ratios at p99 (lower is better for ours; < 1 means ours wins)",
        "",
        "| load | e2e ours/RR | e2e ours/LR | e2e ours/ideal | TTFT ours/RR | TTFT ours/LR "
        "| TTFT ours/ideal |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ratios:
        lines.append(
            f"| {r['load']:.0%} | {fmt(r['e2e_p99_ours_over_round_robin'])} "
            f"| {fmt(r['e2e_p99_ours_over_least_request'])} "
            f"| {fmt(r['e2e_p99_ours_over_ideal'])} | {fmt(r['ttft_p99_ours_over_round_robin'])} "
            f"| {fmt(r['ttft_p99_ours_over_least_request'])} "
            f"| {fmt(r['ttft_p99_ours_over_ideal'])} |"
        )
    for policy, why in missing.items():
        lines += ["", f"**Not measured: {LABELS[policy]}** — {why}"]
    lines += [
        "",
        "Latencies are of successful requests only; refusals (503 from admission, passed "
        "through by Envoy) are counted separately, so read p99 next to the refusal rate. "
        "Goodput counts successful requests (and their streamed tokens) per second of trace.",
    ]
    return lines


def plot(results: dict[str, dict[float, dict[str, Any]]], loads: list[float], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = (
        ("e2e_ms", "end-to-end p99 (ms)"),
        ("ttft_ms", "time to first token p99 (ms)"),
        ("refusal_rate", "refusal rate"),
    )
    for ax, (key, title) in zip(axes, panels, strict=True):
        for policy in (*POLICIES, "ideal"):
            series = results.get(policy)
            if not series:
                continue
            xs = [load for load in loads if load in series]
            ys = [series[x][key]["p99"] if key != "refusal_rate" else series[x][key] for x in xs]
            ax.plot([x * 100 for x in xs], ys, marker="o", label=LABELS[policy])
        ax.set_title(title)
        ax.set_xlabel("offered load (% of capacity)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("--duration", type=float, default=30.0, help="trace length per load, s")
    parser.add_argument("--loads", default="0.7,0.85,0.95", help="fractions of capacity")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument(
        "--changes", type=int, default=20, help="load changes timed through the whole chain"
    )
    args = parser.parse_args(argv)
    stop_on_signals()
    try:
        loads = [float(x) for x in args.loads.split(",")]
    except ValueError:
        parser.error(f"--loads must be comma-separated numbers, got {args.loads!r}")
    policies = [p for p in args.policies.split(",") if p]
    bad = set(policies) - set(POLICIES)
    if bad or not all(0 < x < 2 for x in loads) or args.duration <= 0:
        parser.error(f"bad --policies {sorted(bad)} / --loads / --duration")

    specs = node_specs()
    capacity = workload.capacity_rps(specs, workload.PROMPT, workload.OUTPUT)
    mean_p, mean_o = workload.PROMPT.mean(), workload.OUTPUT.mean()
    traces = {
        load: workload.generate(
            seed=args.seed + i, rate_rps=capacity * load, duration_s=args.duration
        )
        for i, load in enumerate(loads)
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for load, trace in traces.items():
        workload.save(trace, RESULTS / f"routing_trace_{round(load * 100)}.jsonl")

    results: dict[str, dict[float, dict[str, Any]]] = {
        "ideal": {
            load: summarize(ideal.simulate(t, specs, mean_p, mean_o), args.duration)
            for load, t in traces.items()
        }
    }
    missing: dict[str, str] = {}
    chain: dict[str, Any] | None = None
    if "ours" in policies and not sidecars_available():
        policies.remove("ours")
        missing["ours"] = "`fleet sidecar` (sidecar.cli) is not in the tree yet."
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as tmp:
        work = Path(tmp)
        procs = ProcGroup(work)
        try:
            nodes = Nodes(procs, specs)
            for policy in policies:
                pdir = work / policy
                pdir.mkdir()
                try:
                    results[policy], got = run_policy(
                        policy, nodes, traces, args.duration, pdir, args.changes
                    )
                    chain = chain or got
                except (AssertionError, OSError) as exc:
                    missing[policy] = f"the run failed: {str(exc).splitlines()[0]}"
                    print(f"routing {policy} failed: {exc}", file=sys.stderr)
        finally:
            with contextlib.suppress(Exception):
                procs.stop_all()

    ratios = headline(results, loads)
    payload = {
        "fleet": {
            "speeds": SPEEDS,
            "nodes": specs,
            "capacity_rps": round(capacity, 3),
            "mean_prompt_tokens": round(mean_p, 1),
            "mean_output_tokens": round(mean_o, 1),
        },
        "workload": {
            "seed": args.seed,
            "duration_s": args.duration,
            "prompt": workload.PROMPT,
            "output": workload.OUTPUT,
            "traces": {str(load): f"routing_trace_{round(load * 100)}.jsonl" for load in traces},
        },
        "results": {p: {str(k): v for k, v in r.items()} for p, r in results.items()},
        "headline": ratios,
        "not_measured": missing,
        "chain_propagation": chain,
    }
    write_results("routing", payload, markdown(results, ratios, capacity, loads, missing))
    plot(results, loads, RESULTS / "routing.png")
    if chain is not None:
        write_chain(chain)
    return 0


def write_chain(chain: dict[str, Any]) -> None:
    """propagation_chain.{json,md,png}: node -> sidecar -> control plane -> each Envoy."""
    stages = chain["cumulative_ms"]
    lines = [
        "# Propagation: load change at a node -> new weight in each Envoy",
        f"{chain['changes']} changes (node n0 flipped between 0 and 1 in flight by a direct "
        f"stream), {chain['missed']} not seen within 5 s. Times are cumulative from the "
        "request being sent (or closed) at the node; each stage is polled every ~1-3 ms, so "
        "that is the resolution.",
        "",
        "| stage reached | p50 ms | p99 ms | p50 after the sidecar ms |",
        "|---|---|---|---|",
    ]
    sidecar_p50 = stages["sidecar"]["p50"]
    for name, v in stages.items():
        label = {"sidecar": "sidecar /metrics", "control": "control plane /snapshot"}.get(
            name, f"Envoy {name[-1]} admin /clusters"
        )
        p50 = v["p50"]
        after = None if p50 is None or sidecar_p50 is None else round(p50 - sidecar_p50, 1)
        lines.append(f"| {label} | {fmt(p50)} | {fmt(v['p99'])} | {fmt(after)} |")
    lines += [
        "",
        "The control plane's /snapshot serialises every resource, so polling it is coarser "
        "than polling Envoy's admin; an Envoy can show the weight before the snapshot poll "
        "does. The Envoy rows are the end-to-end answer.",
    ]
    write_results("propagation_chain", chain, lines)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(stages)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [stages[n]["p50"] or 0 for n in names], 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [stages[n]["p99"] or 0 for n in names], 0.4, label="p99")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("ms since the load change (cumulative)")
    ax.set_title("load change -> each stage")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "propagation_chain.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
