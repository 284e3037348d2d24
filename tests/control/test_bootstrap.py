"""The Envoy bootstrap: the shipped file is what render_bootstrap makes, and Envoy takes it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fleet.envoybin import find_envoy
from tests.procs import REPO
from xds_control.bootstrap import default_bootstrap, render_bootstrap


def test_shipped_bootstrap_is_the_rendered_default() -> None:
    shipped = YAML(typ="safe").load((REPO / "envoy" / "bootstrap.yaml").read_text())
    assert shipped == default_bootstrap(), (
        "envoy/bootstrap.yaml is stale: python -m xds_control.bootstrap > envoy/bootstrap.yaml"
    )
    assert shipped["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert shipped["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="api_type"):
        render_bootstrap(
            xds_host="h",
            xds_port=1,
            admin_port=2,
            node_id="n",
            api_type="REST",  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="node_id"):
        render_bootstrap(xds_host="h", xds_port=1, admin_port=2, node_id="")


@pytest.mark.envoy
@pytest.mark.parametrize(
    ("host", "api"), [("127.0.0.1", "GRPC"), ("control", "DELTA_GRPC"), ("::1", "GRPC")]
)
def test_envoy_validates_rendered_bootstraps(tmp_path: Path, host: str, api: str) -> None:
    boot = render_bootstrap(
        xds_host=host,
        xds_port=18000,
        admin_port=9901,
        node_id="n",
        api_type=api,  # type: ignore[arg-type]
    )
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(boot))
    res = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr[-2000:] + res.stdout[-2000:]
