"""How fast a load report becomes an Envoy weight, and how many pushes a burst costs.

Runs the real pieces: ``fleet control`` (a process), a real Envoy bootstrapped from it,
and two test sidecars speaking LoadReporting. No inference node is needed: endpoint
weights are read from Envoy's admin ``/clusters``, which does not dial the hosts.

1. Latency: ``--changes`` times, flip node n1 between idle and busy and time from the
   report leaving the sidecar to Envoy's admin showing n1's new weight (p50/p99).
2. Burst: send ``--burst`` reports as fast as possible (both nodes, varying load) and
   count snapshot builds, EDS pushes and Envoy cluster updates it caused.

    python -m bench.control_propagation [--changes 50] [--burst 100] [--api sotw|delta|both]
                                        [--gaps-ms 50,0]

Writes bench/results/control_propagation.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.control.control_proc import Control, Reporter
from tests.control.envoy_harness import Envoy
from tests.procs import ProcGroup, free_port, wait_until

RESULTS = Path(__file__).resolve().parent / "results"
NODES = {"n1": 18101, "n2": 18102}  # addresses Envoy is told about; never dialled here


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def envoy_updates(envoy: Envoy) -> int:
    stats = envoy.admin("/stats?filter=^cluster.alpha.update_success$")
    return int(stats.split(":")[-1]) if ":" in stats else 0


def run(changes: int, burst: int, delta: bool, gap_s: float, work: Path) -> dict[str, Any]:
    procs = ProcGroup(work)
    config = work / "fleet.yaml"
    config.write_text(
        f"listener: {{address: 127.0.0.1, port: {free_port()}}}\n"
        "models:\n  - id: alpha\nstale_after_s: 60\n"
    )
    try:
        control = Control(procs, config)
        reps = {n: Reporter(control.xds_port, n, "127.0.0.1", p) for n, p in NODES.items()}
        for rep in reps.values():
            rep.send({"alpha": 0})
        envoy = Envoy(procs, control.xds_port, delta=delta)
        envoy.wait_ready()
        port1 = NODES["n1"]
        wait_until(lambda: len(envoy.weights("alpha")) == 2, 20, "both endpoints in Envoy")

        # Learn the two weights the policy gives n1 idle and busy, then time flips.
        weight_of: dict[int, int] = {}
        for load in (3, 0):
            before = envoy.weights("alpha")[port1]
            reps["n1"].send({"alpha": load})

            def moved(b: int = before) -> int:
                w = envoy.weights("alpha")[port1]
                return w if w != b else 0

            weight_of[load] = wait_until(moved, 10, f"n1 weight for load {load}")
        latencies: list[float] = []
        for i in range(changes):
            time.sleep(gap_s)  # load changes arrive spaced, as a node's load does
            load = 3 if i % 2 == 0 else 0
            target = weight_of[load]
            t0 = time.perf_counter()
            reps["n1"].send({"alpha": load})

            def arrived(t: int = target) -> bool:
                return envoy.weights("alpha")[port1] == t

            wait_until(
                arrived,
                10,
                "the new weight",
                interval=0.0005,
            )
            latencies.append((time.perf_counter() - t0) * 1000)

        reports0 = control.metric("fleet_control_load_reports_total", kind="load")
        builds0 = control.metric("fleet_control_snapshot_builds_total")
        pushes0 = control.metric("fleet_control_xds_pushes_total", type="eds")
        updates0 = envoy_updates(envoy)
        t0 = time.perf_counter()
        for i in range(burst):
            reps["n1" if i % 2 else "n2"].send({"alpha": i % 4})
        send_s = time.perf_counter() - t0
        # The last report of the burst: n1 at (burst-1) % 4, n2 at (burst-2) % 4 loads.
        reps["n1"].send({"alpha": 0})
        reps["n2"].send({"alpha": 3})
        wait_until(
            lambda: envoy.weights("alpha") == {port1: weight_of[0], NODES["n2"]: weight_of[3]},
            10,
            "the burst to settle",
        )
        wait_until(
            lambda: (
                control.metric("fleet_control_load_reports_total", kind="load") - reports0
                == burst + 2
            ),
            10,
            "every burst report to be received",
        )
        builds = control.metric("fleet_control_snapshot_builds_total") - builds0
        pushes = control.metric("fleet_control_xds_pushes_total", type="eds") - pushes0
        updates = envoy_updates(envoy) - updates0
        for rep in reps.values():
            rep.close()
        return {
            "api": "delta" if delta else "sotw",
            "changes": changes,
            "gap_ms": round(gap_s * 1000),
            "latency_ms": {
                "p50": round(statistics.median(latencies), 2),
                "p99": round(percentile(latencies, 99), 2),
                "max": round(max(latencies), 2),
                "min": round(min(latencies), 2),
            },
            "weights_seen": {"idle": weight_of[0], "busy": weight_of[3]},
            "burst": {
                "reports": burst + 2,
                "send_seconds": round(send_s, 3),
                "snapshot_builds": int(builds),
                "eds_pushes": int(pushes),
                "envoy_cluster_updates": updates,
            },
        }
    finally:
        procs.stop_all()


def write(results: list[dict[str, Any]], command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "control_propagation.json").write_text(
        json.dumps({"command": command, "results": results}, indent=2) + "\n"
    )
    lines = [
        "# Control plane: load report -> Envoy weight",
        "",
        f"Command: `{command}`",
        "",
        "| api | changes (gap ms) | p50 ms | p99 ms | max ms | burst reports | builds "
        "| EDS pushes | Envoy updates |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat, b = r["latency_ms"], r["burst"]
        lines.append(
            f"| {r['api']} | {r['changes']} ({r['gap_ms']}) | {lat['p50']} | {lat['p99']} "
            f"| {lat['max']} "
            f"| {b['reports']} | {b['snapshot_builds']} | {b['eds_pushes']} "
            f"| {b['envoy_cluster_updates']} |"
        )
    lines += [
        "",
        "Latency is measured from the report leaving a test sidecar to Envoy's admin "
        "/clusters showing the new weight (admin polled every 0.5 ms). With a gap, each "
        "change arrives after a quiet period and is built at once; with gap 0 changes come "
        "back to back and each waits for the 20 ms rate-limit window. The burst columns "
        "count what 102 reports sent as fast as possible (both nodes) cost.",
    ]
    (RESULTS / "control_propagation.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.control_propagation")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument(
        "--gaps-ms",
        default="50,0",
        help="comma-separated pauses between timed changes; 0 = back to back (default 50,0)",
    )
    parser.add_argument("--api", choices=["sotw", "delta", "both"], default="both")
    args = parser.parse_args(argv)
    apis = ["sotw", "delta"] if args.api == "both" else [args.api]
    try:
        gaps = [float(g) / 1000 for g in args.gaps_ms.split(",")]
    except ValueError:
        parser.error(f"--gaps-ms: expected numbers like 50,0, got {args.gaps_ms!r}")
    results = []
    for api in apis:
        for gap in gaps:
            with tempfile.TemporaryDirectory(prefix="bench-control-") as work:
                result = run(args.changes, args.burst, api == "delta", gap, Path(work))
            print(json.dumps(result))
            results.append(result)
    write(results, " ".join(["python -m bench.control_propagation", *(argv or sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
