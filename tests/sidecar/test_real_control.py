"""The sidecar against the real ``fleet control``: its load and its node's death arrive."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.control.control_proc import Control
from tests.procs import ProcGroup, wait_until
from tests.sidecar.conftest import Load, start_node, start_sidecar

T = 20


def test_real_control_plane_sees_load_and_node_down(procs: ProcGroup, tmp_path: Path):
    config = tmp_path / "fleet.yaml"
    config.write_text("models:\n  - id: alpha\n")
    control = Control(procs, config)
    node = start_node(procs, "real-1", max_in_flight=1, decode_tps=2)
    start_sidecar(procs, node.url, control.xds_port, "--advertise", f"127.0.0.1:{node.port}")

    def seen() -> dict:
        return control.snapshot()["nodes"].get("real-1") or {}

    wait_until(lambda: seen().get("up"), T, "the node registered", on_timeout=procs.logs)
    assert seen()["address"] == f"127.0.0.1:{node.port}"
    Load(node.url, max_tokens=200).send(2)
    wait_until(
        lambda: (
            seen()["models"]["alpha"]
            == {
                "state": "loaded",
                "in_flight": 1,
                "queue_depth": 1,
                "max_in_flight": 1,
                "max_queue_depth": 4,
            }
        ),
        T,
        "the load in the control plane's fleet state",
        on_timeout=procs.logs,
    )
    node.proc.stop(sig=signal.SIGKILL)
    wait_until(lambda: seen()["up"] is False, T, "the node marked down", on_timeout=procs.logs)
