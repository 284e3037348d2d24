"""A fleet for end-to-end tests: real Envoy, control plane, sim nodes and sidecars on free ports.

``PieceFleet`` starts each piece itself, so a test can place models on chosen nodes, talk
to a node directly, or stop the control plane alone. ``UpFleet`` runs the real ``fleet up``.
Every wait is a condition with a deadline; failures print the processes' logs.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from fleet.envoybin import find_envoy
from tests.procs import Proc, ProcGroup, free_port, http_json, port_is_free, wait_until
from xds_control.bootstrap import render_bootstrap

HOST = "127.0.0.1"
# Slow enough to hold a request in flight, fast enough that short answers are quick.
SIM_DECODE_TPS = 20
FULL = 4  # max in flight per model per node; no queue, so FULL held requests fill a node
NODE_LIMITS = ("--max-in-flight", str(FULL), "--max-queue-depth", "0")
WARN = ("--log-level", "warn")
LONG = 100_000  # max_tokens that keeps a sim stream going until the client leaves


def chat_body(model: str, max_tokens: int = 1, stream: bool = False) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def free_port_run(count: int) -> int:
    """First of ``count`` consecutive free ports (for fleet up's --*-port-base flags)."""

    def attempt() -> int | None:
        base = free_port()
        ok = base + count < 65536 and all(port_is_free(base + i) for i in range(count))
        return base if ok else None

    return wait_until(attempt, 10, f"{count} consecutive free ports", interval=0)


class Envoy:
    """Envoy from a rendered bootstrap, one worker thread so its balancing is easy to read."""

    def __init__(self, procs: ProcGroup, workdir: Path, xds_port: int) -> None:
        self.admin_port = free_port()
        path = workdir / "envoy-bootstrap.json"
        path.write_text(
            json.dumps(
                render_bootstrap(
                    xds_host=HOST, xds_port=xds_port, admin_port=self.admin_port, node_id="e2e"
                )
            )
        )
        self.proc = procs.start(
            "envoy",
            [find_envoy(), "-c", str(path), "--use-dynamic-base-id", "--concurrency", "1", *WARN],
        )

    def admin(self, path: str) -> Any:
        status, _, body = http_json(f"http://{HOST}:{self.admin_port}{path}")
        assert status == 200, body
        return body

    def hosts(self, cluster: str) -> dict[int, dict[str, Any]]:
        """Envoy's view of one cluster (the control plane names it after the model), by port."""
        statuses = self.admin("/clusters?format=json").get("cluster_statuses", [])
        found = [c for c in statuses if c["name"] == cluster]
        if not found:
            return {}
        return {
            int(host["address"]["socket_address"]["port_value"]): {
                "weight": int(host.get("weight", 1)),
                "health": host.get("health_status", {}),
            }
            for host in found[0].get("host_statuses", [])
        }

    def counter(self, suffix: str) -> int:
        """Sum of a cluster counter over every cluster (e.g. ``upstream_rq_retry``)."""
        text = httpx.get(f"http://{HOST}:{self.admin_port}/stats?filter={suffix}$").text
        return sum(
            int(v) for k, v in re.findall(r"^cluster\.(\S+): (\d+)$", text, re.M) if "xds" not in k
        )


class Node:
    """A node process and its sidecar."""

    def __init__(self, procs: ProcGroup, name: str, models: list[str], control_port: int):
        self.name = name
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        model_args = [a for m in models for a in ("--model", m)]
        self.proc = procs.fleet(
            name,
            "node",
            "--name",
            name,
            "--listen",
            f"{HOST}:{self.port}",
            *model_args,
            *NODE_LIMITS,
            "--sim-decode-tps",
            str(SIM_DECODE_TPS),
        )
        self.sidecar_port = free_port()
        self.sidecar: Proc = procs.fleet(
            f"sidecar-{name}",
            "sidecar",
            "--node",
            self.url,
            "--listen",
            f"{HOST}:{self.sidecar_port}",
            "--control",
            f"{HOST}:{control_port}",
            "--advertise",
            f"{HOST}:{self.port}",
            "--name",
            name,
        )

    def model(self, model: str) -> dict[str, Any]:
        status, _, body = http_json(f"{self.url}/health")
        assert status == 200, body
        return next(m for m in body["models"] if m["id"] == model)


class PieceFleet:
    """Control plane + Envoy + nodes (each with a sidecar), models placed per node."""

    def __init__(
        self,
        procs: ProcGroup,
        workdir: Path,
        placement: dict[str, list[str]],
        model_options: dict[str, dict[str, Any]] | None = None,
    ):
        self.procs = procs
        self.workdir = workdir
        self.port = free_port()
        self.xds_port, self.http_port = free_port(), free_port()
        self.config = workdir / "fleet.yaml"
        models = sorted({m.partition("=")[0] for ms in placement.values() for m in ms})
        self.config.write_text(
            json.dumps(
                {
                    "listener": {"address": HOST, "port": self.port},
                    "models": [{"id": m, **(model_options or {}).get(m, {})} for m in models],
                    # Long enough that a paused sidecar's last report still counts.
                    "stale_after_s": 60,
                }
            )
        )
        self.control = self.start_control()
        self.envoy = Envoy(procs, workdir, self.xds_port)
        self.nodes = {name: Node(procs, name, ms, self.xds_port) for name, ms in placement.items()}
        self.by_port = {n.port: n for n in self.nodes.values()}
        self.client = httpx.Client(base_url=f"http://{HOST}:{self.port}/v1", timeout=30)
        for name, ms in placement.items():
            for m in ms:
                self.wait_routed(m.partition("=")[0], name)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start_control(self) -> Proc:
        proc = self.procs.fleet(
            "control",
            "control",
            "--config",
            str(self.config),
            "--xds",
            f"{HOST}:{self.xds_port}",
            "--http",
            f"{HOST}:{self.http_port}",
        )
        wait_until(
            lambda: http_json(f"http://{HOST}:{self.http_port}/healthz")[0] == 200,
            60,
            "the control plane's /healthz",
            on_timeout=self.procs.logs,
        )
        return proc

    def chat(self, model: str, **kw: Any) -> httpx.Response:
        return self.client.post("/chat/completions", json=chat_body(model, **kw))

    def wait_routed(self, model: str, node: str) -> None:
        """Until Envoy has an endpoint on ``node`` for ``model`` that is healthy and idle."""
        port = self.nodes[node].port

        def ok() -> bool:
            host = self.envoy.hosts(model).get(port)
            return bool(host and host["health"].get("eds_health_status") in (None, "HEALTHY"))

        wait_until(ok, 120, f"Envoy routing {model} to {node}", on_timeout=self.procs.logs)
        wait_until(
            lambda: self.chat(model).status_code == 200,
            30,
            f"a {model} answer through Envoy",
            on_timeout=self.procs.logs,
        )

    def served_by(self, model: str, n: int) -> list[str]:
        """Send ``n`` sequential short requests; the node that answered each."""
        out = []
        for _ in range(n):
            resp = self.chat(model)
            assert resp.status_code == 200, resp.text
            out.append(resp.headers["x-fleet-node"])
        return out

    @contextlib.contextmanager
    def hold(self, node: str, model: str, count: int) -> Iterator[None]:
        """Keep ``count`` streams in flight straight on ``node`` (not via Envoy) until exit."""
        target = self.nodes[node]
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(httpx.Client(base_url=target.url, timeout=30))
            before = target.model(model)["in_flight"]
            for _ in range(count):
                resp = stack.enter_context(
                    client.stream(
                        "POST", "/v1/chat/completions", json=chat_body(model, LONG, stream=True)
                    )
                )
                assert resp.status_code == 200, resp.read()
            wait_until(
                lambda: target.model(model)["in_flight"] >= before + count,
                10,
                f"{count} held requests on {node}",
            )
            yield
        wait_until(lambda: target.model(model)["in_flight"] == 0, 10, f"{node} to free its permits")

    def view(self, model: str) -> dict[str, Any]:
        """Envoy's endpoints for ``model`` by node name (None: no endpoint on that node)."""
        hosts = self.envoy.hosts(model)
        return {n.name: hosts.get(n.port) for n in self.nodes.values()}

    def wait_envoy(self, model: str, pred: Any, what: str, timeout: float = 15) -> None:
        """Until Envoy's view of ``model``'s endpoints satisfies ``pred(view)``."""
        wait_until(
            lambda: pred(self.view(model)),
            timeout,
            what,
            on_timeout=lambda: json.dumps(self.view(model)),
        )

    def pause_sidecar(self, node: str) -> None:
        self.nodes[node].sidecar.send_signal(signal.SIGSTOP)

    def resume_sidecar(self, node: str) -> None:
        self.nodes[node].sidecar.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.client.close()


class UpFleet:
    """``fleet up`` itself on free ports; its console output is the process log."""

    def __init__(self, procs: ProcGroup, workdir: Path, *args: str, nodes: int = 2) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.xds_port, self.http_port = free_port(), free_port()
        self.node_base, self.sidecar_base = free_port_run(nodes), free_port_run(nodes)
        self.workdir = workdir
        self.proc = procs.fleet(
            "up",
            "up",
            "--nodes",
            str(nodes),
            *args,
            "--workdir",
            str(workdir),
            "--port",
            str(self.port),
            "--admin-port",
            str(self.admin_port),
            "--xds-port",
            str(self.xds_port),
            "--control-http-port",
            str(self.http_port),
            "--node-port-base",
            str(self.node_base),
            "--sidecar-port-base",
            str(self.sidecar_base),
        )
        self.procs = procs
        self.nodes = nodes

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def ports(self) -> list[int]:
        fixed = [self.port, self.admin_port, self.xds_port, self.http_port]
        return fixed + [
            b + i for b in (self.node_base, self.sidecar_base) for i in range(self.nodes)
        ]

    def wait_ready(self, timeout: float) -> str:
        def ready() -> str | None:
            assert self.proc.alive(), self.proc.log_text()
            match = re.search(r"ready in [\d.]+ s .*", self.proc.log_text())
            return match.group(0) if match else None

        return wait_until(ready, timeout, "fleet up's ready banner", on_timeout=self.procs.logs)

    def children(self) -> dict[str, dict[str, Any]]:
        state = json.loads((self.workdir / "children.json").read_text())
        return {c["name"]: c for c in state["children"]}
