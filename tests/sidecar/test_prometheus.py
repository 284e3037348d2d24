"""What a real Prometheus server scrapes from a sidecar in front of a busy sim node."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.procs import ProcGroup, free_port, wait_until
from tests.sidecar.conftest import HOST, Load, start_node, start_sidecar

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="Debian's prometheus binary is not installed (run `make system-deps`)",
    ),
]


def start_prometheus(procs: ProcGroup, tmp: Path, target: str) -> str:
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {"job_name": "sidecar", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    procs.start(
        "prometheus",
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address={HOST}:{port}",
            "--log.level=warn",
        ],
    )
    return f"http://{HOST}:{port}"


def query(prom: str, expr: str) -> dict[str, float]:
    """Instant query; each series keyed by its labels (minus job/instance) as `k=v,…`."""
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    out = {}
    for series in body["data"]["result"]:
        labels = {
            k: v for k, v in series["metric"].items() if k not in ("job", "instance", "__name__")
        }
        out[",".join(f"{k}={v}" for k, v in sorted(labels.items()))] = float(series["value"][1])
    return out


def test_prometheus_scrapes_the_nodes_real_load(procs: ProcGroup, tmp_path: Path):
    # Slow decoding keeps requests in flight: 2 run, 3 wait, 2 more are refused.
    node = start_node(procs, "busy", max_in_flight=2, max_queue_depth=3, decode_tps=1)
    sidecar = start_sidecar(procs, node.url, free_port())  # no control plane: not needed here
    load = Load(node.url, max_tokens=500)
    load.send(5)
    wait_until(lambda: node.model()["queue_depth"] == 3, 20, "5 requests admitted or queued")
    load.send(2)
    health = wait_until(
        lambda: (m := node.model())["rejected_queue_full_total"] == 2 and m,
        20,
        "2 refusals",
        on_timeout=procs.logs,
    )
    assert sorted(load.statuses) == [503, 503]

    prom = start_prometheus(procs, tmp_path, f"{HOST}:{sidecar.port}")
    expected = {
        'fleet_node_up{node="busy"}': {"node=busy": 1.0},
        'fleet_model_running{model="alpha"}': {"model=alpha,node=busy": health["in_flight"]},
        'fleet_model_queued{model="alpha"}': {"model=alpha,node=busy": health["queue_depth"]},
        'fleet_model_capacity_running{model="alpha"}': {
            "model=alpha,node=busy": health["max_in_flight"]
        },
        'fleet_model_capacity_queue{model="alpha"}': {
            "model=alpha,node=busy": health["max_queue_depth"]
        },
        'fleet_model_admitted_total{model="alpha"}': {
            "model=alpha,node=busy": health["admitted_total"]
        },
        'fleet_model_refused_total{model="alpha"}': {
            "model=alpha,node=busy,reason=queue_full": health["rejected_queue_full_total"],
            "model=alpha,node=busy,reason=timeout": health["rejected_timeout_total"],
        },
        'fleet_model_state{model="alpha",state="loaded"}': {
            "model=alpha,node=busy,state=loaded": 1.0
        },
        '{__name__="vllm:num_requests_running"}': {"model_name=alpha": health["in_flight"]},
        '{__name__="vllm:num_requests_waiting"}': {"model_name=alpha": health["queue_depth"]},
    }
    assert (health["in_flight"], health["queue_depth"]) == (2, 3)

    def seen() -> dict[str, dict[str, float]]:
        return {expr: query(prom, expr) for expr in expected}

    wait_until(
        lambda: seen() == expected,
        30,
        "Prometheus to see the node's /health values",
        interval=0.5,
        on_timeout=lambda: f"seen: {seen()}\nexpected: {expected}\n{procs.logs()}",
    )
