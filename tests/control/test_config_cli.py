"""``fleet config validate|render``: what an operator sees before a file goes live."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.procs import REPO, fleet_argv
from xds_control.config_cli import main
from xds_control.snapshot import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

EXAMPLE = str(REPO / "examples" / "fleet.yaml")


def test_validate_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", EXAMPLE]) == 0
    assert "OK (2 models" in capsys.readouterr().out


def test_validate_names_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("models:\n  - id: alpha\n  - id: beta\n    lb_policy: FASTEST\n")
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"{bad}:4: models[1].lb_policy: Input should be 'LEAST_REQUEST', 'ROUND_ROBIN' or 'RANDOM'"
    )


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read config" in capsys.readouterr().err


def test_render_json_lists_every_resource_in_ads_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["render", EXAMPLE, "--format", "json"]) == 0
    resources = json.loads(capsys.readouterr().out)["resources"]
    assert [(r["type_url"], r["name"]) for r in resources] == [
        (CLUSTER_TYPE, "alpha"),
        (CLUSTER_TYPE, "beta"),
        (ENDPOINT_TYPE, "alpha"),
        (ENDPOINT_TYPE, "beta"),
        (LISTENER_TYPE, "public"),
        (ROUTE_TYPE, "public_routes"),
    ]
    alpha = resources[0]["resource"]
    assert alpha["lb_policy"] == "LEAST_REQUEST"  # Envoy's own field names
    assert "lb_policy" not in resources[1]["resource"]  # ROUND_ROBIN is Envoy's default
    listener = resources[4]["resource"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["@type"].endswith("HttpConnectionManager")


def test_render_yaml_includes_static_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(
        "models: [{id: alpha}]\n"
        "nodes: [{name: n1, address: 10.1.2.3, port: 8101, models: [alpha]}]\n"
    )
    assert main(["render", str(cfg)]) == 0
    doc = YAML(typ="safe").load(capsys.readouterr().out)
    (cla,) = [r["resource"] for r in doc["resources"] if r["type_url"] == ENDPOINT_TYPE]
    (endpoint,) = cla["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {
        "address": "10.1.2.3",
        "port_value": 8101,
    }


def test_render_refuses_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("models: [{id: alpha}]\nlistner: {}\n")
    assert main(["render", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{bad}:2: listner: unknown key" in captured.err


def test_fleet_command_dispatches_to_config(tmp_path: Path) -> None:
    ok = subprocess.run(
        fleet_argv("config", "validate", EXAMPLE), capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    usage = subprocess.run(fleet_argv("config"), capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "validate" in usage.stderr
