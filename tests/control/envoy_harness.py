"""Run a real Envoy bootstrapped from our control plane and read its admin API."""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from fleet.envoybin import find_envoy
from tests.procs import ProcGroup, free_port, wait_until
from xds_control.bootstrap import render_bootstrap


class Envoy:
    """An Envoy process whose admin port is known; stopped with its ProcGroup."""

    def __init__(
        self, procs: ProcGroup, xds_port: int, *, delta: bool = False, node_id: str = "test-envoy"
    ) -> None:
        self.admin_port = free_port()
        boot = render_bootstrap(
            xds_host="127.0.0.1",
            xds_port=xds_port,
            admin_port=self.admin_port,
            node_id=node_id,
            api_type="DELTA_GRPC" if delta else "GRPC",
        )
        self.dir = Path(tempfile.mkdtemp(prefix="envoy-", dir=procs.log_dir))
        path = self.dir / "bootstrap.json"
        path.write_text(json.dumps(boot))
        self.proc = procs.start(
            "envoy",
            [
                find_envoy(),
                "-c",
                str(path),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "--drain-time-s",
                "0",
            ],
        )
        self.procs = procs

    def admin(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            raw = resp.read()
        return json.loads(raw) if "json" in path else raw.decode()

    def wait_ready(self, timeout: float = 30) -> None:
        wait_until(
            lambda: self.admin("/ready").strip() == "LIVE",
            timeout,
            "envoy to be LIVE",
            on_timeout=self.procs.logs,
        )

    def hosts(self, cluster: str) -> dict[int, dict[str, Any]]:
        """Port -> {weight, health flags} for one cluster, from admin /clusters."""
        data = self.admin("/clusters?format=json")
        for status in data.get("cluster_statuses", []):
            if status["name"] != cluster:
                continue
            out = {}
            for host in status.get("host_statuses", []):
                port = host["address"]["socket_address"]["port_value"]
                out[int(port)] = {
                    "weight": int(host.get("weight", 1)),
                    "health": host.get("health_status", {}),
                }
            return out
        return {}

    def weights(self, cluster: str) -> dict[int, int]:
        return {p: h["weight"] for p, h in self.hosts(cluster).items()}


class ThreadedAds:
    """The in-process ADS server on its own loop thread, so sync waits don't block it."""

    def __init__(self, port: int = 0) -> None:
        import asyncio
        import threading

        from tests.control.xds_client import AdsServer

        self.loop = asyncio.new_event_loop()
        self.server: AdsServer | None = None
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = AdsServer(port)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="ads", daemon=True)
        self.thread.start()
        assert ready.wait(10), "ADS server did not start"

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def set_resources(self, resources: dict[str, dict[str, Any]]) -> set[str]:
        import asyncio

        assert self.server is not None
        cache = self.server.cache

        async def apply() -> set[str]:
            return cache.set_resources(resources)

        return asyncio.run_coroutine_threadsafe(apply(), self.loop).result(5)

    def metric(self, name: str, **labels: str) -> float:
        assert self.server is not None
        return self.server.metric(name, **labels)

    def close(self) -> None:
        import asyncio

        if not self.thread.is_alive():
            return
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
