"""The shipped Prometheus config and Grafana dashboard match what the processes export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import generate_latest

from sidecar.metrics import build_registry
from sidecar.node_state import parse_health
from sidecar.stats import Stats
from tests.procs import REPO
from tests.sidecar.fake_node import health

DASHBOARD = REPO / "deploy" / "grafana" / "fleet-dashboard.json"
PROMETHEUS = REPO / "deploy" / "prometheus.yml"


def sidecar_metric_names() -> set[str]:
    state = parse_health(health(in_flight=1, decode_tps=20.0), 1)
    registry = build_registry(lambda: state, lambda: "n1")
    Stats(registry)
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict]) -> list[str]:
        out = []
        for p in panels:
            out += [t["expr"] for t in p.get("targets", [])]
            out += walk(p.get("panels", []))
        return out

    return walk(json.loads(DASHBOARD.read_text())["panels"])


def test_dashboard_uses_only_metrics_the_sidecar_exports():
    exported = sidecar_metric_names()
    used = {
        name
        for expr in dashboard_exprs()
        for name in re.findall(r"\b((?:fleet_model|fleet_node|fleet_sidecar|vllm:)[\w:]*)", expr)
    }
    assert used, "the dashboard should chart the sidecar's metrics"
    assert used <= exported, f"not exported by the sidecar: {sorted(used - exported)}"
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting"} <= used


def test_prometheus_config_scrapes_the_compose_services():
    config = yaml.safe_load(PROMETHEUS.read_text())
    scraped = {
        (job.get("metrics_path", "/metrics"), target)
        for job in config["scrape_configs"]
        for sc in job["static_configs"]
        for target in sc["targets"]
    }
    assert {
        ("/metrics", "sidecar-1:9101"),
        ("/metrics", "sidecar-2:9102"),
        ("/metrics", "control:18080"),
        ("/stats/prometheus", "envoy:9901"),
    } <= scraped


@pytest.mark.prometheus
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) absent")
def test_promtool_accepts_the_prometheus_config():
    done = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
