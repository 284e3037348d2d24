"""``fleet control`` as a process: ready line, HTTP endpoints, hot reload, clean exit."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control.control_proc import Control, Reporter
from tests.procs import ProcGroup, http_json, port_is_free, wait_until

pytest.importorskip("xds_control.snapshot", reason="the snapshot builder is not there yet")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text("models:\n  - id: alpha\nstale_after_s: 0.5\n")
    return path


@pytest.fixture
def control(procs: ProcGroup, config: Path) -> Iterator[Control]:
    yield Control(procs, config)


def test_serves_health_metrics_snapshot_and_exits_cleanly(control: Control) -> None:
    status, _, body = http_json(control.url("/healthz"))
    assert status == 200 and body["status"] == "ok"
    snap = control.snapshot()
    assert set(snap["types"]) == {"cds", "eds", "lds", "rds"}
    assert "alpha" in snap["types"]["cds"]["resources"]
    assert control.metric("fleet_control_snapshot_version") >= 1
    assert control.metric("fleet_control_config_last_reload_ok") == 1
    control.proc.send_signal(signal.SIGTERM)
    assert control.proc.popen.wait(10) == 0
    assert port_is_free(control.xds_port) and port_is_free(control.http_port)


def test_sigint_also_exits_cleanly(control: Control) -> None:
    control.proc.send_signal(signal.SIGINT)
    assert control.proc.popen.wait(10) == 0
    assert port_is_free(control.xds_port) and port_is_free(control.http_port)


def test_bad_config_at_start_names_the_file(procs: ProcGroup, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - id: alpha\n    lb_polcy: RANDOM\n")
    proc = procs.fleet("control", "control", "--config", str(bad), "--xds", "127.0.0.1:0")
    assert proc.popen.wait(30) == 2
    assert "bad.yaml" in proc.log_text() and "lb_polcy" in proc.log_text()


def test_hot_reload_applies_good_edits_and_refuses_bad_ones(control: Control, config: Path) -> None:
    config.write_text("models:\n  - id: alpha\n  - id: beta\nstale_after_s: 0.5\n")
    wait_until(
        lambda: "beta" in control.snapshot()["types"]["cds"]["resources"],
        15,
        "beta to appear after the edit",
        on_timeout=control.procs.logs,
    )
    config.write_text("models:\n  - id: alpha\n  - id: beta\n    bogus_key: 1\n")
    wait_until(
        lambda: "bogus_key" in control.proc.log_text(),
        15,
        "the bad edit to be refused",
        on_timeout=control.procs.logs,
    )
    assert control.metric("fleet_control_config_reloads_total", result="error") >= 1
    assert control.metric("fleet_control_config_last_reload_ok") == 0
    assert "beta" in control.snapshot()["types"]["cds"]["resources"]  # last good config
    assert control.proc.alive()


def test_sidecars_are_told_a_new_ttl_on_reload(control: Control, config: Path) -> None:
    reporter = Reporter(control.xds_port, "n1", "127.0.0.1", 8101)
    try:
        reporter.send({"alpha": 0})
        assert reporter.settings.stale_after_ms == 500
        config.write_text("models:\n  - id: alpha\nstale_after_s: 0.9\n")
        settings = reporter.next_settings()
        assert settings.stale_after_ms == 900 and settings.heartbeat_interval_ms == 300
    finally:
        reporter.close()


def test_load_reports_become_endpoints_then_go_stale(control: Control) -> None:
    reporter = Reporter(control.xds_port, "n1", "127.0.0.1", 8101)
    try:
        assert reporter.settings.stale_after_ms == 500
        reporter.send({"alpha": 1})
        wait_until(
            lambda: "8101" in str(control.snapshot()["types"]["eds"]["resources"]["alpha"]),
            10,
            "n1's endpoint in alpha's ClusterLoadAssignment",
        )
        assert control.metric("fleet_control_connected_sidecars") == 1
        # Silence: after the TTL the node is stale even though nothing was reported.
        wait_until(lambda: control.snapshot()["nodes"]["n1"]["stale"], 10, "n1 to go stale")
        assert control.metric("fleet_control_nodes", status="stale") == 1
    finally:
        reporter.close()
