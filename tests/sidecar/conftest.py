"""Sidecar test fixtures: a stub control plane, sim nodes and sidecars on free ports."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import Proc, ProcGroup, free_port, http_json, wait_until
from tests.sidecar.stub_control import StubControl

HOST = "127.0.0.1"


@pytest.fixture
def stub() -> Iterator[StubControl]:
    control = StubControl(heartbeat_ms=200).start()
    yield control
    control.stop()


@dataclass
class SimNode:
    proc: Proc
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def health(self) -> dict:
        status, _, body = http_json(f"{self.url}/health", timeout=2)
        assert status == 200, body
        return body

    def model(self, model: str = "alpha") -> dict:
        return next(m for m in self.health()["models"] if m["id"] == model)


def start_node(
    procs: ProcGroup,
    name: str = "n1",
    *,
    port: int | None = None,
    max_in_flight: int = 2,
    max_queue_depth: int = 4,
    decode_tps: float = 5.0,
) -> SimNode:
    port = port or free_port()
    proc = procs.fleet(
        name,
        "node",
        "--name",
        name,
        "--listen",
        f"{HOST}:{port}",
        "--model",
        "alpha=sim",
        "--max-in-flight",
        str(max_in_flight),
        "--max-queue-depth",
        str(max_queue_depth),
        "--max-wait-s",
        "300",
        "--sim-decode-tps",
        str(decode_tps),
    )
    node = SimNode(proc, name, port)
    wait_until(lambda: node.model()["state"] == "loaded", 30, f"node {name} up", 0.1, procs.logs)
    return node


@dataclass
class Sidecar:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of /metrics by (name, labels)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=2) as resp:
            text = resp.read().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, frozenset(labels.items())))


def start_sidecar(
    procs: ProcGroup, node_url: str, control_port: int, *extra: str, name: str = "sidecar"
) -> Sidecar:
    port = free_port()
    proc = procs.fleet(
        name,
        "sidecar",
        "--node",
        node_url,
        "--listen",
        f"{HOST}:{port}",
        "--control",
        f"{HOST}:{control_port}",
        *extra,
    )
    sidecar = Sidecar(proc, port)
    wait_until(lambda: sidecar.metrics(), 20, "sidecar /metrics", 0.1, procs.logs)
    return sidecar


class Load:
    """Requests held open in background threads (slow sim decode keeps them in flight)."""

    def __init__(self, url: str, model: str = "alpha", max_tokens: int = 200) -> None:
        self.url = url
        self.model = model
        self.max_tokens = max_tokens
        self.statuses: list[int] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _one(self) -> None:
        try:
            status, _, _ = http_json(
                f"{self.url}/v1/chat/completions",
                {
                    "model": self.model,
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": self.max_tokens,
                },
                timeout=120,
            )
        except OSError:
            status = -1  # the node went away under the request
        with self._lock:
            self.statuses.append(status)

    def send(self, n: int = 1) -> None:
        for _ in range(n):
            thread = threading.Thread(target=self._one, daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float = 30) -> None:
        for thread in self._threads:
            thread.join(timeout)
