"""Control-plane scale: many reporting sidecars, many ADS streams, SotW vs Delta.

One asyncio process plays the fleet around a real ``fleet control`` process:
- simulated sidecars (one LoadReporting gRPC stream each, ``MODELS_PER_NODE`` models per
  node, so endpoints = sidecars x 4) report at ``--hz``; each report moves one of the
  node's models to a random load, so weights really change;
- ``--streams`` ADS clients that subscribe to CDS then EDS and ACK every response as
  Envoy does, plus one real Envoy;
- one probe sidecar flips between idle and busy every 250 ms; each client times the
  moment its EDS shows the probe's new weight (push latency, report -> client).
Measured per point: control-plane CPU (from /proc, in cores), push latency p50/p99,
EDS bytes pushed per second (all clients), reports/s actually offered. The sweep over
endpoint counts shows where CPU saturates one core (the knee).

    python -m bench.scale [--endpoints 50,200,600,1000] [--streams 10] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from bench.common import RESULTS, fmt, percentile, pyplot, stop_on_signals, write_results
from fleet.proto import load_pb2, load_pb2_grpc
from tests.control.control_proc import Control
from tests.control.envoy_harness import Envoy
from tests.procs import ProcGroup, free_port

CDS = "type.googleapis.com/" + cluster_pb2.Cluster.DESCRIPTOR.full_name
EDS = "type.googleapis.com/" + endpoint_pb2.ClusterLoadAssignment.DESCRIPTOR.full_name
MODELS = 20
MODELS_PER_NODE = 4
MAX_IN_FLIGHT = 4
PROBE_PORT = 9
PROBE_FLIP_S = 0.25


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sidecar:
    """A simulated sidecar: one LoadReporting stream fed from a queue."""

    def __init__(self, target: str, name: str, address: str, port: int, models: list[str]):
        self.identity = load_pb2.NodeIdentity(name=name, address=address, port=port)
        self.models = models
        self.loads = dict.fromkeys(models, 0)
        self.seq = 0
        self.queue: asyncio.Queue[load_pb2.LoadReport | None] = asyncio.Queue()
        self.channel = grpc.aio.insecure_channel(target)
        self.call = load_pb2_grpc.LoadReportingStub(self.channel).StreamLoad(self._requests())
        self.drain = asyncio.ensure_future(self._drain())

    async def _requests(self) -> AsyncIterator[load_pb2.LoadReport]:
        while (item := await self.queue.get()) is not None:
            yield item

    async def _drain(self) -> None:
        async for _ in self.call:  # settings messages; read so they never pile up
            pass

    def report(self) -> None:
        self.seq += 1
        self.queue.put_nowait(
            load_pb2.LoadReport(
                node=self.identity,
                node_up=True,
                sequence=self.seq,
                observed_unix_nanos=time.time_ns(),
                models=[
                    load_pb2.ModelLoad(
                        model=m,
                        state=load_pb2.MODEL_STATE_LOADED,
                        in_flight=n,
                        max_in_flight=MAX_IN_FLIGHT,
                        max_queue_depth=8,
                    )
                    for m, n in self.loads.items()
                ],
            )
        )

    async def close(self) -> None:
        self.queue.put_nowait(None)
        self.call.cancel()
        self.drain.cancel()
        await self.channel.close(None)


class AdsClient:
    """An ADS stream that ACKs like Envoy and watches the probe endpoint's weight."""

    def __init__(self, target: str, delta: bool, node_id: str, probe: dict[str, Any]):
        self.delta = delta
        self.node_id = node_id
        self.probe = probe
        self.bytes = 0
        self.pushes = 0
        self.latencies: list[float] = []
        self.probe_weight: int | None = None
        self.ready = asyncio.Event()  # set once the probe endpoint has been seen
        self.clusters: list[str] = []
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self.channel = grpc.aio.insecure_channel(target)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
        self.call = method(self._requests())
        self.task = asyncio.ensure_future(self._run())

    async def _requests(self) -> AsyncIterator[Any]:
        while (item := await self.out.get()) is not None:
            yield item

    def send(self, type_url: str, **kw: Any) -> None:
        cls = discovery_pb2.DeltaDiscoveryRequest if self.delta else discovery_pb2.DiscoveryRequest
        req = cls(type_url=type_url, **kw)
        req.node.id = self.node_id
        self.out.put_nowait(req)

    async def _run(self) -> None:
        self.send(CDS)
        async for resp in self.call:
            now = time.perf_counter()
            if resp.type_url == CDS:
                self._ack(resp, [])
                names = sorted(self._clusters(resp))
                if names != self.clusters:
                    self.clusters = names
                    if self.delta:
                        self.send(EDS, resource_names_subscribe=names)
                    else:
                        self.send(EDS, resource_names=names)
                continue
            self.bytes += resp.ByteSize()
            self.pushes += 1
            self._watch_probe(resp, now)
            self._ack(resp, self.clusters)

    def _ack(self, resp: Any, names: list[str]) -> None:
        if self.delta:
            self.send(resp.type_url, response_nonce=resp.nonce)
        else:
            self.send(
                resp.type_url,
                version_info=resp.version_info,
                response_nonce=resp.nonce,
                resource_names=names,
            )

    def _clusters(self, resp: Any) -> list[str]:
        packed = [r.resource for r in resp.resources] if self.delta else resp.resources
        out = []
        for any_msg in packed:
            c = cluster_pb2.Cluster()
            any_msg.Unpack(c)
            out.append(c.name)
        return out

    def _watch_probe(self, resp: Any, now: float) -> None:
        packed = (
            [r.resource for r in resp.resources if r.name == self.probe["cluster"]]
            if self.delta
            else list(resp.resources)
        )
        for any_msg in packed:
            cla = endpoint_pb2.ClusterLoadAssignment()
            any_msg.Unpack(cla)
            if cla.cluster_name != self.probe["cluster"]:
                continue
            for loc in cla.endpoints:
                for lb in loc.lb_endpoints:
                    if lb.endpoint.address.socket_address.port_value == PROBE_PORT:
                        weight = lb.load_balancing_weight.value
                        if weight != self.probe_weight and self.probe["sent"] is not None:
                            self.latencies.append(now - self.probe["sent"])
                        self.probe_weight = weight
                        self.ready.set()

    async def close(self) -> None:
        self.out.put_nowait(None)
        self.call.cancel()
        self.task.cancel()
        await self.channel.close(None)


async def drive(
    xds_port: int, endpoints: int, streams: int, delta: bool, seconds: float, hz: float
) -> dict[str, Any]:
    target = f"127.0.0.1:{xds_port}"
    models = [f"m{i:02d}" for i in range(MODELS)]
    n_nodes = max(1, endpoints // MODELS_PER_NODE)
    sidecars = [
        Sidecar(
            target,
            f"sim{i:04d}",
            "127.0.0.1",
            20000 + i,
            [models[(i * MODELS_PER_NODE + k) % MODELS] for k in range(MODELS_PER_NODE)],
        )
        for i in range(n_nodes)
    ]
    probe_sidecar = Sidecar(target, "probe", "127.0.0.2", PROBE_PORT, [models[0]])
    probe: dict[str, Any] = {"cluster": models[0], "sent": None}
    for s in (*sidecars, probe_sidecar):
        s.report()
    clients = [AdsClient(target, delta, f"bench-ads-{i}", probe) for i in range(streams)]
    rng = random.Random(1)

    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 30)
    for c in clients:
        c.latencies.clear()
        c.bytes = c.pushes = 0
    reports = 0
    start = time.perf_counter()
    next_flip = start
    busy = False
    tick = 1.0 / hz
    t = start
    while t - start < seconds:
        # One tick: every sidecar reports once, spread over the tick.
        for i, s in enumerate(sidecars):
            model = s.models[rng.randrange(len(s.models))]
            s.loads[model] = rng.randrange(MAX_IN_FLIGHT + 1)
            s.report()
            reports += 1
            if i % 16 == 15:
                await asyncio.sleep(0)
        now = time.perf_counter()
        if now >= next_flip and all(c.probe_weight is not None for c in clients):
            busy = not busy
            probe_sidecar.loads[models[0]] = MAX_IN_FLIGHT if busy else 0
            probe["sent"] = time.perf_counter()
            probe_sidecar.report()
            next_flip = now + PROBE_FLIP_S
        t += tick
        await asyncio.sleep(max(0.0, t - time.perf_counter()))
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.3)  # let in-flight pushes land before counting
    latencies = [x for c in clients for x in c.latencies]
    result = {
        "reports_per_s": round(reports / elapsed, 1),
        "eds_bytes_per_s": round(sum(c.bytes for c in clients) / elapsed),
        "eds_pushes_per_s_per_stream": round(sum(c.pushes for c in clients) / elapsed / streams, 1),
        "push_latency_ms": {
            "p50": _ms(percentile(latencies, 50)),
            "p99": _ms(percentile(latencies, 99)),
            "samples": len(latencies),
        },
    }
    for c in clients:
        await c.close()
    for s in (*sidecars, probe_sidecar):
        await s.close()
    return result


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def run_point(
    endpoints: int, streams: int, delta: bool, seconds: float, hz: float, work: Path
) -> dict[str, Any]:
    procs = ProcGroup(work)
    config = work / "fleet.yaml"
    models = "".join(f"  - id: m{i:02d}\n" for i in range(MODELS))
    config.write_text(
        f"listener: {{address: 127.0.0.1, port: {free_port()}}}\nmodels:\n{models}"
        "stale_after_s: 60\n"
    )
    try:
        control = Control(procs, config)
        envoy = Envoy(procs, control.xds_port, delta=delta, node_id="bench-scale-envoy")
        envoy.wait_ready()
        pid = control.proc.pid
        cpu0, own0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        result = asyncio.run(drive(control.xds_port, endpoints, streams, delta, seconds, hz))
        wall = time.perf_counter() - t0
        result["control_cpu_cores"] = round((cpu_seconds(pid) - cpu0) / wall, 3)
        # The simulated fleet shares the box: when it nears a core, the box is the bound.
        result["loadgen_cpu_cores"] = round((time.process_time() - own0) / wall, 3)
        result["envoy_alive"] = envoy.proc.alive()
        result["endpoints"] = (endpoints // MODELS_PER_NODE) * MODELS_PER_NODE + 1
        result["streams"] = streams + 1
        result["api"] = "delta" if delta else "sotw"
        return result
    finally:
        procs.stop_all()


def plot(points: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for api in ("sotw", "delta"):
        pts = [p for p in points if p["api"] == api]
        xs = [p["endpoints"] for p in pts]
        axes[0].plot(xs, [p["control_cpu_cores"] for p in pts], marker="o", label=api)
        axes[1].plot(xs, [p["push_latency_ms"]["p99"] for p in pts], marker="o", label=api)
        axes[2].plot(xs, [p["eds_bytes_per_s"] / 1e6 for p in pts], marker="o", label=api)
    titles = ("control-plane CPU (cores)", "push latency p99 (ms)", "EDS MB/s pushed (all streams)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("endpoints")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--endpoints", default="50,200,600,1000", help="comma-separated sweep")
    parser.add_argument("--streams", type=int, default=10, help="ADS client streams")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per point")
    parser.add_argument("--hz", type=float, default=10.0, help="reports per sidecar per second")
    args = parser.parse_args(argv)
    stop_on_signals()
    try:
        sweep = [int(x) for x in args.endpoints.split(",")]
    except ValueError:
        parser.error(f"--endpoints must be comma-separated integers, got {args.endpoints!r}")
    if min(sweep) < MODELS_PER_NODE or args.streams < 1 or args.seconds <= 0 or args.hz <= 0:
        parser.error(f"need endpoints >= {MODELS_PER_NODE}, streams >= 1, seconds/hz > 0")
    points = []
    for endpoints in sweep:
        for delta in (False, True):
            with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
                point = run_point(endpoints, args.streams, delta, args.seconds, args.hz, Path(tmp))
            print(f"scale {point}", flush=True)
            points.append(point)
    lines = [
        "# Control-plane scale: sidecars reporting, ADS streams, SotW vs Delta",
        f"{MODELS} models, {MODELS_PER_NODE} per simulated sidecar, reports at {args.hz:g} Hz "
        f"per sidecar, {args.streams} ADS client streams + 1 real Envoy, "
        f"{args.seconds:g} s per point.",
        "",
        "| endpoints | api | reports/s offered | control CPU (cores) | push p50 / p99 ms "
        "| EDS pushes/s per stream | EDS bytes/s (all streams) | load generator CPU (cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lat = p["push_latency_ms"]
        lines.append(
            f"| {p['endpoints']} | {p['api']} | {p['reports_per_s']} | {p['control_cpu_cores']} "
            f"| {fmt(lat['p50'])} / {fmt(lat['p99'])} | {p['eds_pushes_per_s_per_stream']} "
            f"| {p['eds_bytes_per_s']:,} | {p['loadgen_cpu_cores']} |"
        )
    lines += [
        "",
        "Push latency: probe report sent -> an ADS client receives the EDS response with the "
        "probe's new weight (same process clock), over every client and flip. The load "
        "generator shares the 2 cores with the control plane, so reports/s offered is "
        "measured, not assumed.",
    ]
    write_results("scale", {"points": points, "args": vars(args)}, lines)
    plot(points, RESULTS / "scale.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
