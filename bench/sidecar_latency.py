"""How fast a node's load change reaches the control plane through the sidecar, and what the
sidecar costs at idle.

Runs a real sim node, the real ``fleet sidecar`` process and an in-process LoadReporting
server that stamps each report on arrival. ``--changes`` times, one request is sent to the
node (admission: in_flight 0 -> 1) and the clock runs from just before the request is sent
to the arrival of the first report showing it admitted: an upper bound of node change ->
report received, as the node admits a moment after the request leaves. It is measured for
both ways of reading the node (``/health/stream``, and ``/health`` polled every 50 ms),
side by side in one run. Then, with the node idle, the sidecar's CPU (user + system from
/proc) over ``--idle-s`` seconds.

    python -m bench.sidecar_latency [--changes 60] [--idle-s 10]

Writes bench/results/sidecar_latency.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import percentile, write_results
from tests.procs import ProcGroup, free_port, http_json, wait_until
from tests.sidecar.stub_control import StubControl

HOST = "127.0.0.1"
SOURCES = ("stream", "poll")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def admitted(stub: StubControl, after: int) -> int | None:
    """Arrival time (unix ns) of the first report whose admitted_total passed ``after``."""
    for r in stub.received():
        if not r.report.heartbeat and r.report.models and r.report.models[0].admitted_total > after:
            return r.at_ns
    return None


def measure(source: str, changes: int, idle_s: float, work: Path) -> dict[str, Any]:
    procs = ProcGroup(work)
    stub = StubControl(heartbeat_ms=1000).start()
    try:
        node_port, sidecar_port = free_port(), free_port()
        node_url = f"http://{HOST}:{node_port}"
        procs.fleet(
            "node",
            "node",
            "--name",
            "bench",
            "--listen",
            f"{HOST}:{node_port}",
            "--model",
            "alpha=sim",
            "--sim-decode-tps",
            "40",
        )
        wait_until(lambda: http_json(f"{node_url}/health")[0] == 200, 30, "node up", 0.1)
        sidecar = procs.fleet(
            "sidecar",
            "sidecar",
            "--node",
            node_url,
            "--listen",
            f"{HOST}:{sidecar_port}",
            "--control",
            f"{HOST}:{stub.port}",
            "--node-source",
            source,
        )
        wait_until(lambda: stub.received(), 30, "the announce", 0.05, procs.logs)
        latencies_ms: list[float] = []
        lags_ms: list[float] = []
        for _ in range(changes):
            before = http_json(f"{node_url}/health")[2]["models"][0]["admitted_total"]
            body: dict[str, Any] = {
                "model": "alpha",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 4,  # ~100 ms in flight at 40 tokens/s
            }
            sent_ns = time.time_ns()
            request = threading.Thread(
                target=http_json, args=(f"{node_url}/v1/chat/completions", body, 30)
            )
            request.start()
            arrived = wait_until(partial(admitted, stub, before), 10, "the change", 0.0005)
            latencies_ms.append((arrived - sent_ns) / 1e6)
            report = next(
                r.report
                for r in stub.received()
                if r.at_ns == arrived and r.report.models[0].admitted_total > before
            )
            lags_ms.append((arrived - report.observed_unix_nanos) / 1e6)
            request.join(30)
            wait_until(
                lambda: http_json(f"{node_url}/health")[2]["models"][0]["in_flight"] == 0,
                10,
                "idle again",
            )
        # Idle: the node quiet, the sidecar only reading keepalives and sending heartbeats.
        time.sleep(1.0)  # let the last completion's reports settle before sampling
        cpu0, t0 = cpu_seconds(sidecar.pid), time.monotonic()
        time.sleep(idle_s)
        cpu1, t1 = cpu_seconds(sidecar.pid), time.monotonic()
        return {
            "source": source,
            "changes": changes,
            "latency_ms": {
                "p50": round(percentile(latencies_ms, 50) or 0, 2),
                "p99": round(percentile(latencies_ms, 99) or 0, 2),
                "max": round(max(latencies_ms), 2),
            },
            "observed_to_received_ms": {
                "p50": round(percentile(lags_ms, 50) or 0, 2),
                "p99": round(percentile(lags_ms, 99) or 0, 2),
            },
            "idle_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
            "idle_window_s": idle_s,
        }
    finally:
        procs.stop_all()
        stub.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sidecar_latency")
    parser.add_argument("--changes", type=int, default=60, help="timed changes per source (60)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="idle CPU window (10 s)")
    parser.add_argument("--sources", default=",".join(SOURCES), help="stream,poll")
    args = parser.parse_args(argv)
    if args.changes < 1 or args.idle_s <= 0:
        parser.error("--changes must be >= 1 and --idle-s > 0")
    sources = args.sources.split(",")
    if not set(sources) <= set(SOURCES):
        parser.error(f"--sources: choose from {','.join(SOURCES)}")
    results = []
    for source in sources:
        with tempfile.TemporaryDirectory(prefix="bench-sidecar-") as work:
            result = measure(source, args.changes, args.idle_s, Path(work))
        print(result)
        results.append(result)
    lines = [
        "# Sidecar: node change -> load report received",
        "| node source | changes | p50 ms | p99 ms | max ms | observed->received p50 / p99 ms "
        "| idle CPU (% of one core) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat, lag = r["latency_ms"], r["observed_to_received_ms"]
        lines.append(
            f"| {r['source']} | {r['changes']} | {lat['p50']} | {lat['p99']} | {lat['max']} "
            f"| {lag['p50']} / {lag['p99']} | {r['idle_cpu_percent_of_one_core']} |"
        )
    lines += [
        "",
        "Latency runs from just before a request is sent to the node until the control plane "
        "stub receives the first report showing it admitted (so it includes the HTTP request "
        "reaching the node). observed->received is the gRPC leg alone: from the sidecar "
        "reading the state to the report's arrival. Idle CPU is the sidecar process's user + "
        "system time over the idle window while it holds the node stream (1 keepalive/s) and "
        "sends a heartbeat each second; in poll mode it reads /health every 50 ms.",
    ]
    write_results("sidecar_latency", {"results": results}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
