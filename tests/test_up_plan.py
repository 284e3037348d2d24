"""`fleet up` without starting a fleet: the plan, progress lines, supervision and CLI errors."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from fleet import up
from fleet.plan import (
    EMBEDDED_MODEL,
    Child,
    Kind,
    ModelSpec,
    NodeLimits,
    Plan,
    PlanError,
    Ports,
    listener_of,
    make_plan,
)
from fleet.readiness import Progress
from fleet.supervisor import Backoff, Supervisor
from tests.procs import free_port, wait_until


def plan_for(tmp_path: Path, **kw: Any) -> Plan:
    args: dict[str, Any] = {
        "python": "py",
        "envoy": "/bin/envoy",
        "nodes": 2,
        "models": [],
        "ports": Ports(),
        "workdir": tmp_path,
    }
    args.update(kw)
    return make_plan(**args)


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_default_plan_serves_the_embedded_model_on_the_documented_ports(tmp_path):
    plan = plan_for(tmp_path)
    assert [c.name for c in plan.children] == [
        "control",
        "node-1",
        "node-2",
        "sidecar-1",
        "sidecar-2",
        "envoy",
    ]
    assert plan.endpoint == "http://127.0.0.1:8080/v1"
    node1, node2 = plan.of_kind("node")
    assert flag(node1.argv, "--listen") == "127.0.0.1:8101"
    assert flag(node2.argv, "--listen") == "127.0.0.1:8102"
    assert flag(node1.argv, "--model") == f"{EMBEDDED_MODEL}=embedded"
    side2 = plan.of_kind("sidecar")[1]
    assert flag(side2.argv, "--node") == "http://127.0.0.1:8102"
    assert flag(side2.argv, "--listen") == "127.0.0.1:9102"
    assert flag(side2.argv, "--control") == "127.0.0.1:18000"
    assert flag(side2.argv, "--name") == "node-2"
    control = plan.of_kind("control")[0]
    assert flag(control.argv, "--xds") == "127.0.0.1:18000"
    assert flag(control.argv, "--http") == "127.0.0.1:18080"
    assert flag(control.argv, "--config") == str(tmp_path / "fleet.yaml")
    envoy = plan.of_kind("envoy")[0]
    assert envoy.argv[0] == "/bin/envoy"
    assert "--use-dynamic-base-id" in envoy.argv
    assert flag(envoy.argv, "--log-level") == "warn"
    assert flag(envoy.argv, "-c") == str(plan.bootstrap_path)
    assert not envoy.restart and node1.restart


def test_generated_config_puts_envoys_listener_on_the_public_port(tmp_path):
    plan = plan_for(
        tmp_path,
        models=[ModelSpec.parse("alpha=sim"), ModelSpec.parse("beta=sim")],
        ports=Ports(envoy=18123),
    )
    assert plan.config == {
        "listener": {"address": "127.0.0.1", "port": 18123},
        "models": [{"id": "alpha"}, {"id": "beta"}],
    }
    assert listener_of(plan.config) == ("127.0.0.1", 18123)


def test_generated_config_is_accepted_by_the_control_plane(tmp_path):
    config = pytest.importorskip("xds_control.config")
    up.write_files(plan_for(tmp_path, models=[ModelSpec.parse("alpha=sim")]))
    loaded = config.load_config(tmp_path / "fleet.yaml")
    assert [m.id for m in loaded.models] == ["alpha"]


def test_bootstrap_points_envoy_at_the_control_plane_with_admin_on_loopback(tmp_path):
    plan = plan_for(tmp_path, ports=Ports(xds=19000, admin=19901))
    boot = plan.bootstrap
    assert boot["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 19901,
    }
    (cluster,) = boot["static_resources"]["clusters"]
    addr = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert addr["socket_address"]["port_value"] == 19000
    assert "ads_config" in boot["dynamic_resources"]


def test_node_flags_and_models_reach_every_node(tmp_path):
    plan = plan_for(
        tmp_path,
        models=[ModelSpec.parse("alpha=sim"), ModelSpec.parse("beta=/models/b")],
        limits=NodeLimits(max_in_flight=3, max_queue_depth=0, max_wait_s=2.5, sim_decode_tps=50.0),
    )
    for node in plan.of_kind("node"):
        argv = " ".join(node.argv)
        assert "--model alpha=sim --model beta=/models/b" in argv
        assert "--max-in-flight 3 --max-queue-depth 0 --max-wait-s 2.5 --sim-decode-tps 50" in argv


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "bad model id"), ("a b", "bad model id"), ("alpha=", "empty SOURCE")],
)
def test_bad_model_flags_say_what_is_wrong(text, message):
    with pytest.raises(PlanError, match=message):
        ModelSpec.parse(text)


def test_a_model_given_twice_with_different_sources_is_refused(tmp_path):
    with pytest.raises(PlanError, match="twice"):
        plan_for(tmp_path, models=[ModelSpec.parse("a=sim"), ModelSpec.parse("a=/x")])


def test_overlapping_port_ranges_are_refused(tmp_path):
    with pytest.raises(PlanError, match="port 9101 is given to both node-2 and sidecar-1"):
        plan_for(tmp_path, nodes=3, ports=Ports(node_base=9100, sidecar_base=9101))


def test_progress_prints_one_line_per_state_change():
    progress = Progress(("alpha", "beta"))
    assert progress.update("node-1", None) == ["node-1: starting"]
    assert progress.update("node-1", None) == []
    loading = {"models": [{"id": "alpha", "state": "loading"}, {"id": "beta", "state": "loaded"}]}
    assert progress.update("node-1", loading) == ["node-1: alpha loading", "node-1: beta loaded"]
    assert progress.update("node-1", loading) == []
    assert progress.missing() == ["alpha"]
    loaded = {"models": [{"id": "alpha", "state": "loaded"}, {"id": "beta", "state": "loaded"}]}
    assert progress.update("node-1", loaded) == ["node-1: alpha loaded"]
    assert progress.missing() == []
    assert progress.update("node-1", None) == ["node-1: starting"]


def test_a_model_failed_on_every_node_is_detected():
    progress = Progress(("alpha",))
    progress.update("node-1", {"models": [{"id": "alpha", "state": "failed"}]})
    progress.update("node-2", {"models": [{"id": "alpha", "state": "loading"}]})
    assert progress.failed_everywhere(["node-1", "node-2"]) == []
    progress.update("node-2", {"models": [{"id": "alpha", "state": "failed"}]})
    assert progress.failed_everywhere(["node-1", "node-2"]) == ["alpha"]


def test_backoff_doubles_up_to_a_cap():
    backoff = Backoff(base_s=1, cap_s=5)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def _child(tmp_path: Path, name: str, kind, code: str, restart: bool = True) -> Child:
    return Child(
        name=name,
        kind=kind,
        argv=(sys.executable, "-c", code),
        log=tmp_path / f"{name}.log",
        ports=(),
        restart=restart,
    )


def test_supervisor_stops_envoy_first_then_sidecars_nodes_control(tmp_path):
    order = tmp_path / "order"
    ready = tmp_path / "ready"
    code = (
        "import signal, sys, time, pathlib\n"
        "def bye(*_):\n"
        f"    open({str(order)!r}, 'a').write(sys.argv[1] + '\\n'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        f"open({str(ready)!r}, 'a').write('x')\n"
        "while True: time.sleep(1)\n"
    )
    kinds: list[tuple[str, Kind]] = [
        ("control", "control"),
        ("node-1", "node"),
        ("sidecar-1", "sidecar"),
        ("envoy", "envoy"),
    ]
    children = [
        Child(name, kind, (sys.executable, "-c", code, name), tmp_path / f"{name}.log", (), True)
        for name, kind in kinds
    ]
    sup = Supervisor(children)
    sup.start_all()
    wait_until(lambda: ready.exists() and len(ready.read_text()) == 4, 20, "children started")
    sup.stop_all()
    assert order.read_text().split() == ["envoy", "sidecar-1", "node-1", "control"]
    assert sup.running == {}


def test_supervisor_reports_a_death_and_restarts_after_backoff(tmp_path):
    child = _child(tmp_path, "node-1", "node", "import sys; print('boom'); sys.exit(3)")
    sup = Supervisor([child], backoff=Backoff(base_s=0.05))
    sup.start_all()
    (ex,) = wait_until(sup.poll, 20, "the child to exit")
    assert ex.returncode == 3
    assert "node-1 died (exit code 3)" in ex.describe()
    assert sup.restart_later(child) == pytest.approx(0.05)
    wait_until(lambda: sup.poll() and True, 20, "the restarted child to exit again")
    assert child.log.read_text().splitlines().count("boom") == 2
    assert sup.restart_later(child) == pytest.approx(0.1)
    sup.stop_all()


def test_up_refuses_ports_in_use_before_starting_anything(tmp_path, capsys):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        argv = ["--model", "a=sim", "--nodes", "1", "--workdir", str(tmp_path), "--port", str(port)]
        for opt in ("--admin-port", "--xds-port", "--control-http-port"):
            argv += [opt, str(free_port())]
        argv += ["--node-port-base", str(free_port()), "--sidecar-port-base", str(free_port())]
        assert up.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{port} (envoy)" in err
    assert not (tmp_path / "logs").exists()


def test_up_rejects_zero_nodes(tmp_path, capsys):
    assert up.main(["--nodes", "0", "--workdir", str(tmp_path)]) == 2
    assert "--nodes must be at least 1" in capsys.readouterr().err


def test_banner_gives_copy_paste_examples(tmp_path):
    plan = plan_for(tmp_path, models=[ModelSpec.parse("alpha=sim")], ports=Ports(envoy=18081))
    text = up.banner(plan, 3.2)
    assert "ready in 3.2 s" in text
    assert "curl -s http://127.0.0.1:18081/v1/chat/completions" in text
    assert 'OpenAI(base_url="http://127.0.0.1:18081/v1"' in text
    assert '"model": "alpha"' in text


def test_an_operators_config_file_is_used_as_is_and_sets_envoys_port(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("listener: {address: 127.0.0.1, port: 18555}\nmodels: [{id: alpha}]\n")
    args = up.build_parser().parse_args(["--config", str(config), "--model", "alpha=sim"])
    plan = up.plan_from_args(args, "/bin/envoy")
    assert plan.config is None and plan.config_path == config
    assert plan.endpoint == "http://127.0.0.1:18555/v1"
    control = plan.of_kind("control")[0]
    assert flag(control.argv, "--config") == str(config)
    up.write_files(plan)
    assert not (tmp_path / "fleet.yaml").exists()


def test_a_port_flag_that_contradicts_the_config_file_is_refused(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("listener: {port: 18555}\nmodels: [{id: alpha}]\n")
    args = up.build_parser().parse_args(["--config", str(config), "--port", "18556"])
    with pytest.raises(PlanError, match=r"disagrees with listener\.port 18555"):
        up.plan_from_args(args, "/bin/envoy")
