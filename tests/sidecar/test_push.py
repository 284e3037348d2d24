"""The push path: a real sim node, the real sidecar process and a stub control plane."""

from __future__ import annotations

import signal

import pytest

from fleet.proto import load_pb2
from tests.procs import ProcGroup, free_port, http_json, port_is_free, wait_until
from tests.sidecar.conftest import Load, start_node, start_sidecar
from tests.sidecar.stub_control import StubControl

T = 20  # generous bound for any wait: the tests never assert on speed


def alpha(report: load_pb2.LoadReport) -> load_pb2.ModelLoad:
    found = [m for m in report.models if m.model == "alpha"]
    assert len(found) == 1, report
    return found[0]


def test_announces_then_reports_every_change_and_heartbeats(procs: ProcGroup, stub: StubControl):
    node = start_node(procs, "n1", max_in_flight=1, decode_tps=10)
    start_sidecar(procs, node.url, stub.port, "--advertise", f"10.0.0.7:{node.port}")

    first = wait_until(lambda: stub.first_of_stream(1), T, "the announce", on_timeout=procs.logs)
    assert (first.node.name, first.node.address, first.node.port) == ("n1", "10.0.0.7", node.port)
    assert first.node_up and not first.heartbeat
    model = alpha(first)
    assert model.state == load_pb2.MODEL_STATE_LOADED
    assert (model.in_flight, model.max_in_flight, model.max_queue_depth) == (0, 1, 4)

    load = Load(node.url, max_tokens=10)  # ~1 s in flight at 10 tokens/s
    load.send(1)
    running = wait_until(
        lambda: next(
            (r for r in stub.reports() if not r.heartbeat and alpha(r).in_flight),
            None,
        ),
        T,
        "a change report with the request in flight",
        on_timeout=procs.logs,
    )
    assert running.node_up and alpha(running).admitted_total == model.admitted_total + 1
    load.join()
    assert load.statuses == [200]
    wait_until(
        lambda: (last := stub.reports()[-1]) and alpha(last).in_flight == 0,
        T,
        "the completion reported",
    )
    seen = len(stub.reports())
    wait_until(
        lambda: sum(r.heartbeat for r in stub.reports()[seen:]) >= 3, T, "heartbeats while idle"
    )
    reports = stub.reports()
    sequences = [r.sequence for r in reports]
    assert sequences == sorted(set(sequences)), "sequence must be strictly increasing"
    assert all(r.observed_unix_nanos > 0 for r in reports)
    # A heartbeat repeats the full state; only the first message carries the identity.
    assert alpha(reports[-1]).admitted_total == model.admitted_total + 1
    assert all(not r.HasField("node") for r in reports[1:])


def test_control_plane_restart_reconnects_and_reannounces(procs: ProcGroup, stub: StubControl):
    node = start_node(procs, "n2", max_in_flight=1, decode_tps=2)
    sidecar = start_sidecar(procs, node.url, stub.port)
    wait_until(lambda: stub.first_of_stream(1), T, "the first announce", on_timeout=procs.logs)
    wait_until(lambda: sidecar.sample("fleet_sidecar_control_connected") == 1, T, "connected")
    before = stub.reports()[-1].sequence

    stub.stop()
    wait_until(lambda: sidecar.sample("fleet_sidecar_control_connected") == 0, T, "loss noticed")
    # With the control plane gone the sidecar still tracks its node and serves /metrics.
    Load(node.url, max_tokens=200).send(1)
    wait_until(
        lambda: sidecar.sample("fleet_model_running", node="n2", model="alpha") == 1,
        T,
        "load visible in /metrics while the control plane is absent",
    )
    assert sidecar.proc.alive()

    restarted = StubControl(port=stub.port, heartbeat_ms=200).start()
    try:
        again = wait_until(
            lambda: restarted.first_of_stream(1), T, "the re-announce", on_timeout=procs.logs
        )
        assert again.node.name == "n2" and again.node.port == node.port
        assert again.sequence > before
        assert again.node_up and alpha(again).in_flight == 1  # the state as it is now
        wait_until(lambda: sidecar.sample("fleet_sidecar_control_connected") == 1, T, "connected")
    finally:
        restarted.stop()


def test_control_plane_absent_at_start(procs: ProcGroup):
    stub = StubControl(port=free_port())  # nothing listens there yet
    node = start_node(procs, "n3")
    sidecar = start_sidecar(procs, node.url, stub.port)
    wait_until(lambda: sidecar.sample("fleet_node_up", node="n3") == 1, T, "node read")
    assert sidecar.sample("fleet_sidecar_control_connected") == 0
    stub.start()
    try:
        first = wait_until(
            lambda: stub.first_of_stream(1), T, "late announce", on_timeout=procs.logs
        )
        assert first.node.name == "n3"
    finally:
        stub.stop()


def test_node_down_is_reported_down_then_up_again(procs: ProcGroup, stub: StubControl):
    node = start_node(procs, "n4")
    sidecar = start_sidecar(procs, node.url, stub.port)
    wait_until(lambda: stub.first_of_stream(1), T, "the announce", on_timeout=procs.logs)

    node.proc.stop(sig=signal.SIGKILL)
    down = wait_until(
        lambda: next((r for r in stub.reports() if not r.node_up), None),
        T,
        "a node-down report",
        on_timeout=procs.logs,
    )
    assert [m.model for m in down.models] == ["alpha"], "down keeps the last-known models"
    wait_until(lambda: sidecar.sample("fleet_node_up", node="n4") == 0, T, "node_up 0")
    assert sidecar.sample("fleet_model_running", node="n4", model="alpha") is None
    status, _, body = http_json(f"{sidecar.url}/healthz")
    assert status == 200, "the sidecar itself is alive"
    assert body == {"status": "ok", "node": "n4", "node_up": False, "control_connected": True}

    start_node(procs, "n4", port=node.port)
    wait_until(lambda: stub.reports()[-1].node_up, T, "the node back up", on_timeout=procs.logs)
    assert sidecar.sample("fleet_node_up", node="n4") == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_and_frees_the_port(procs: ProcGroup, stub: StubControl, sig: int):
    node = start_node(procs, "n5")
    sidecar = start_sidecar(procs, node.url, stub.port)
    wait_until(lambda: stub.first_of_stream(1), T, "the announce", on_timeout=procs.logs)
    assert sidecar.proc.stop(timeout=10, sig=sig) == 0
    assert port_is_free(sidecar.port), "a restarted sidecar could not take its port back"
    assert "sidecar stopped" in sidecar.proc.log_text()


def test_a_taken_listen_port_is_a_clear_error(procs: ProcGroup):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = procs.fleet(
            "sidecar", "sidecar", "--node", "http://127.0.0.1:1", "--listen", f"127.0.0.1:{port}"
        )
        proc.popen.wait(20)
    assert proc.popen.returncode == 1
    assert "Address already in use" in proc.log_text()
