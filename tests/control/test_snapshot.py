"""The snapshot builder: config + fleet state -> the routes, clusters, weights and health
Envoy gets. The last test has the real Envoy binary validate every resource."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, health_check_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.json_to_metadata.v3 import json_to_metadata_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format

from fleet.envoybin import find_envoy
from tests.procs import ProcGroup, free_port, http_json, wait_until
from xds_control.config import FleetConfig, load_config, parse_config
from xds_control.fleet_state import FleetState, ModelLoad, ModelState, NodeState
from xds_control.snapshot import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Snapshot,
    build_snapshot,
)

REPO = Path(__file__).resolve().parents[2]

CONFIG = parse_config(
    """
models:
  - id: alpha
    aliases: [smol]
  - id: meta-llama/Llama-3.1-8B
    lb_policy: ROUND_ROBIN
    retry_on_rejection: false
  - id: gamma
    max_retries: 4
nodes:
  - {name: static-1, address: 10.0.0.9, port: 9000, models: [smol]}
"""
)


def node(
    name: str,
    port: int,
    *loads: ModelLoad,
    up: bool = True,
    last: float | None = 10.0,
    address: str = "127.0.0.1",
) -> NodeState:
    return NodeState(name, address, port, {m.model: m for m in loads}, up=up, last_report=last)


def busy(model: str, in_flight: int, queue: int = 0) -> ModelLoad:
    return ModelLoad(
        model, in_flight=in_flight, queue_depth=queue, max_in_flight=4, max_queue_depth=8
    )


def fleet(*nodes: NodeState, now: float = 11.0) -> FleetState:
    return FleetState({n.name: n for n in nodes}, now=now)


def endpoints(snap: Snapshot, model: str) -> list[tuple[str, int, str]]:
    """(node, weight, health) per endpoint, in the order Envoy gets them."""
    cla = snap.load_assignment(model)
    return [
        (
            lb.endpoint.hostname,
            lb.load_balancing_weight.value,
            health_check_pb2.HealthStatus.Name(lb.health_status),
        )
        for group in cla.endpoints
        for lb in group.lb_endpoints
    ]


def hcm(snap: Snapshot) -> hcm_pb2.HttpConnectionManager:
    out = hcm_pb2.HttpConnectionManager()
    snap.listener().filter_chains[0].filters[0].typed_config.Unpack(out)
    return out


def routes(snap: Snapshot) -> list[rc.Route]:
    return list(snap.route_configuration().virtual_hosts[0].routes)


def model_routes(snap: Snapshot) -> dict[str, rc.Route]:
    return {
        r.match.dynamic_metadata[0].value.string_match.exact: r
        for r in routes(snap)
        if r.HasField("route")
    }


def test_resource_names_follow_the_contract() -> None:
    snap = build_snapshot(CONFIG, FleetState())
    assert set(snap.resources) == {LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE}
    assert list(snap.resources[LISTENER_TYPE]) == ["public"]
    assert list(snap.resources[ROUTE_TYPE]) == ["public_routes"]
    ids = ["alpha", "meta-llama/Llama-3.1-8B", "gamma"]
    assert list(snap.resources[CLUSTER_TYPE]) == ids
    assert list(snap.resources[ENDPOINT_TYPE]) == ids
    for model_id in ids:
        assert snap.load_assignment(model_id).cluster_name == model_id
    # a model nobody serves still gets its (empty) assignment
    assert endpoints(snap, "gamma") == []


def test_clusters_are_eds_over_ads_with_backpressure_friendly_settings() -> None:
    snap = build_snapshot(CONFIG, FleetState())
    alpha = snap.cluster("alpha")
    assert alpha.type == cluster_pb2.Cluster.EDS
    assert alpha.eds_cluster_config.eds_config.HasField("ads")
    assert alpha.eds_cluster_config.eds_config.resource_api_version == config_source_pb2.V3
    assert alpha.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert snap.cluster("meta-llama/Llama-3.1-8B").lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    # no panic routing: "all replicas down" must be a clean 503
    assert alpha.common_lb_config.HasField("healthy_panic_threshold")
    assert alpha.common_lb_config.healthy_panic_threshold.value == 0
    # concurrent admission retries are not capped at Envoy's default of 3
    assert alpha.circuit_breakers.thresholds[0].max_retries.value >= 1024
    od = alpha.outlier_detection
    assert od.enforcing_consecutive_5xx.value == 0  # admission 503s never eject
    assert od.enforcing_consecutive_gateway_failure.value == 0
    assert od.enforcing_success_rate.value == 0
    assert od.split_external_local_origin_errors
    assert od.consecutive_local_origin_failure.value == 3
    assert od.enforcing_consecutive_local_origin_failure.value == 100


def test_outlier_detection_can_be_switched_off() -> None:
    cfg = parse_config("models: [{id: a, outlier_detection: {enabled: false}}]")
    cluster = build_snapshot(cfg, FleetState()).cluster("a")
    assert not cluster.HasField("outlier_detection")


def test_listener_reads_model_from_body_and_routes_over_rds() -> None:
    cfg = parse_config("listener: {address: 127.0.0.1, port: 9999}\nmodels: [{id: a}]")
    snap = build_snapshot(cfg, FleetState())
    listener = snap.listener()
    assert listener.address.socket_address.address == "127.0.0.1"
    assert listener.address.socket_address.port_value == 9999
    assert listener.per_connection_buffer_limit_bytes.value == 8 * 1024 * 1024
    manager = hcm(snap)
    assert manager.rds.route_config_name == "public_routes"
    assert manager.rds.config_source.HasField("ads")
    names = [f.name for f in manager.http_filters]
    assert names == ["envoy.filters.http.json_to_metadata", "envoy.filters.http.router"]
    body = json_to_metadata_pb2.JsonToMetadata()
    manager.http_filters[0].typed_config.Unpack(body)
    rule = body.request_rules.rules[0]
    assert rule.selectors[0].key == "model"
    assert rule.on_missing.value.string_value == "__missing__"
    assert rule.on_error.value.string_value == "__invalid__"
    assert "application/json; charset=utf-8" in body.request_rules.allow_content_types
    assert body.request_rules.allow_empty_content_type
    # Envoy's own replies become envelopes through mappers only: a top-level
    # body_format would double-wrap the routes' direct responses.
    reply = manager.local_reply_config
    assert not reply.HasField("body_format")
    flags = [list(m.filter.response_flag_filter.flags) for m in reply.mappers]
    assert ["NR"] in flags and ["UT"] in flags and any("UH" in f for f in flags)
    for mapper in reply.mappers:
        error = json_format.MessageToDict(mapper.body_format_override.json_format)["error"]
        assert set(error) == {"message", "type", "param", "code"}


def test_every_model_name_routes_to_its_cluster() -> None:
    snap = build_snapshot(CONFIG, FleetState())
    by_name = model_routes(snap)
    assert {name: r.route.cluster for name, r in by_name.items()} == {
        "alpha": "alpha",
        "smol": "alpha",
        "meta-llama/Llama-3.1-8B": "meta-llama/Llama-3.1-8B",
        "gamma": "gamma",
    }
    for r in by_name.values():
        assert r.match.dynamic_metadata[0].filter == "envoy.filters.http.json_to_metadata"
        assert r.route.timeout.ToMilliseconds() == 0  # no total deadline on streams
        assert r.route.HasField("timeout")
    assert by_name["alpha"].route.idle_timeout.ToSeconds() == 300
    # the body is not rewritten, so the node learns the canonical id from a header
    for name, model_id in (("smol", "alpha"), ("gamma", "gamma")):
        (header,) = by_name[name].request_headers_to_add
        assert (header.header.key, header.header.value) == ("x-fleet-model", model_id)


def test_admission_rejections_retry_on_another_replica() -> None:
    three = fleet(*(node(f"n{i}", 8100 + i, busy("alpha", 0), busy("gamma", 0)) for i in range(3)))
    by_name = model_routes(build_snapshot(CONFIG, three))
    retry = by_name["alpha"].route.retry_policy
    assert retry.retry_on.split(",") == [
        "retriable-headers",
        "connect-failure",
        "refused-stream",
        "reset-before-request",
    ]
    assert retry.retriable_headers[0].name == "x-admission-rejected"
    assert [p.name for p in retry.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"
    ]
    assert not retry.HasField("rate_limited_retry_back_off")  # would wait for Retry-After
    assert retry.retry_back_off.base_interval.ToMilliseconds() <= 5
    # three replicas of alpha (+ the static one) -> every other replica gets a try
    assert retry.num_retries.value == 3
    assert by_name["gamma"].route.retry_policy.num_retries.value == 4  # configured
    # retry_on_rejection off: a refusal passes through, an unreachable node is still skipped
    llama = by_name["meta-llama/Llama-3.1-8B"].route.retry_policy
    assert llama.retry_on == "connect-failure,refused-stream,reset-before-request"
    assert not llama.retriable_headers
    # with one replica there is still one retry (the node may have room a moment later)
    lonely = model_routes(build_snapshot(parse_config("models: [{id: a}]"), FleetState()))
    assert lonely["a"].route.retry_policy.num_retries.value == 1


def test_error_routes_follow_model_routes_and_catalog_lists_live_models() -> None:
    snap = build_snapshot(CONFIG, fleet(node("n1", 8101, busy("gamma", 1))))
    names = [r.name for r in routes(snap)]
    assert names[0] == "catalog"
    assert names[-4:] == ["invalid_json", "missing_model", "empty_model", "model_not_found"]
    direct = {r.name: r.direct_response for r in routes(snap) if r.HasField("direct_response")}
    assert direct["invalid_json"].status == 400
    assert direct["missing_model"].status == 400
    assert direct["model_not_found"].status == 404
    not_found = json_format.MessageToDict(direct["model_not_found"].body_format.json_format)
    assert not_found["error"]["code"] == "model_not_found"
    catalog = direct["catalog"]
    assert catalog.status == 200
    assert catalog.body_format.content_type == "application/json"
    listed = json.loads(catalog.body_format.text_format_source.inline_string)
    # alpha (static node) and gamma (n1) have replicas; the llama has none
    assert [m["id"] for m in listed["data"]] == ["alpha", "smol", "gamma"]
    assert listed["object"] == "list"


def test_weights_follow_load_and_ties_break_by_node_name() -> None:
    state = fleet(
        node("n3", 8103, busy("alpha", 0)),
        node("n1", 8101, busy("alpha", 2)),
        node("n2", 8102, busy("alpha", 4, queue=8)),
        node("n0", 8100, busy("alpha", 0)),
    )
    assert endpoints(build_snapshot(CONFIG, state), "alpha") == [
        ("n0", 100, "HEALTHY"),
        ("n1", 32, "HEALTHY"),
        ("n2", 1, "DEGRADED"),
        ("n3", 100, "HEALTHY"),
        ("static-1", 100, "HEALTHY"),
    ]
    cla = build_snapshot(CONFIG, state).load_assignment("alpha")
    # DEGRADED is strict: one healthy replica in a thousand would still take everything
    assert cla.policy.overprovisioning_factor.value >= 100 * 1000


def timed(model: str, in_flight: int, tps: float) -> ModelLoad:
    return ModelLoad(model, in_flight=in_flight, max_in_flight=4, max_queue_depth=8, decode_tps=tps)


def test_slow_replicas_weigh_less_relative_to_the_models_fastest() -> None:
    state = fleet(
        node("fast", 8101, timed("alpha", 0, 200.0)),
        node("slow", 8102, timed("alpha", 0, 50.0)),  # a quarter of the speed
        node("busy-slow", 8103, timed("alpha", 2, 50.0)),  # 32 by load, then a quarter
        node("new", 8104, timed("alpha", 0, 0.0)),  # nothing finished yet: unknown
        node("crawl", 8105, timed("alpha", 0, 0.1)),  # clamped, never 0
        # a silent replica's speed is no reference: otherwise "fast" would be scaled down
        node("gone", 8106, timed("alpha", 0, 1000.0), last=1.0),
    )
    assert endpoints(build_snapshot(CONFIG, state), "alpha") == [
        ("busy-slow", 8, "HEALTHY"),
        ("crawl", 1, "HEALTHY"),
        ("fast", 100, "HEALTHY"),
        ("gone", 1, "UNHEALTHY"),
        ("new", 100, "HEALTHY"),
        ("slow", 25, "HEALTHY"),
        ("static-1", 100, "HEALTHY"),
    ]
    # speed is per model: alpha's fast node says nothing about gamma
    other = fleet(
        node("fast", 8101, timed("alpha", 0, 200.0)), node("g", 8102, timed("gamma", 0, 5))
    )
    assert endpoints(build_snapshot(CONFIG, other), "gamma") == [("g", 100, "HEALTHY")]


def test_unknown_speeds_or_the_knob_off_give_load_only_weights() -> None:
    unknown = fleet(
        node("a", 8101, timed("alpha", 1, 0.0)), node("b", 8102, timed("alpha", 0, 0.0))
    )
    assert endpoints(build_snapshot(CONFIG, unknown), "alpha")[:2] == [
        ("a", 61, "HEALTHY"),
        ("b", 100, "HEALTHY"),
    ]
    off = parse_config("models: [{id: alpha}]\nweights: {speed_aware: false}\n")
    mixed = fleet(
        node("a", 8101, timed("alpha", 1, 200.0)), node("b", 8102, timed("alpha", 0, 50.0))
    )
    assert endpoints(build_snapshot(off, mixed), "alpha") == [
        ("a", 61, "HEALTHY"),
        ("b", 100, "HEALTHY"),
    ]
    assert endpoints(build_snapshot(CONFIG, mixed), "alpha")[:2] == [
        ("a", 61, "HEALTHY"),
        ("b", 25, "HEALTHY"),
    ]


def test_stale_down_and_unloaded_replicas_are_unhealthy() -> None:
    state = fleet(
        node("fresh", 8101, busy("alpha", 0)),
        node("silent", 8102, busy("alpha", 0), last=5.0),  # 6 s ago > 3 s TTL
        node("down", 8103, busy("alpha", 0), up=False),
        node("loading", 8104, ModelLoad("alpha", state=ModelState.LOADING)),
    )
    assert endpoints(build_snapshot(CONFIG, state), "alpha") == [
        ("down", 1, "UNHEALTHY"),
        ("fresh", 100, "HEALTHY"),
        ("loading", 1, "UNHEALTHY"),
        ("silent", 1, "UNHEALTHY"),
        ("static-1", 100, "HEALTHY"),
    ]
    # still within the TTL: not stale
    later = fleet(node("silent", 8102, busy("alpha", 0), last=9.0))
    assert ("silent", 100, "HEALTHY") in endpoints(build_snapshot(CONFIG, later), "alpha")


def test_fleet_membership_rules() -> None:
    state = fleet(
        # a reported node wins over a static one of the same name
        node("static-1", 8200, busy("alpha", 2)),
        # nodes report model ids: an alias or an undeclared model is not routed
        node("n1", 8101, busy("alpha", 0), busy("smol", 0), busy("unknown-model", 0)),
        # Envoy takes IP literals only: localhost is mapped, other names are skipped
        node("n2", 8102, busy("gamma", 0), address="localhost"),
        node("n3", 8103, busy("gamma", 0), address="gpu-host.internal"),
    )
    snap = build_snapshot(CONFIG, state)
    assert endpoints(snap, "alpha") == [("n1", 100, "HEALTHY"), ("static-1", 32, "HEALTHY")]
    static = snap.load_assignment("alpha").endpoints[0].lb_endpoints[1]
    assert static.endpoint.address.socket_address.port_value == 8200
    assert "unknown-model" not in snap.resources[CLUSTER_TYPE]
    gamma = snap.load_assignment("gamma").endpoints[0].lb_endpoints
    assert [lb.endpoint.address.socket_address.address for lb in gamma] == ["127.0.0.1"]


def _wire(snap: Snapshot) -> dict[str, dict[str, bytes]]:
    return {
        t: {n: m.SerializeToString(deterministic=True) for n, m in rs.items()}
        for t, rs in snap.resources.items()
    }


def test_builds_are_deterministic_and_load_changes_touch_only_that_model() -> None:
    before = fleet(node("n1", 8101, busy("alpha", 0), busy("gamma", 0)))
    after = fleet(node("n1", 8101, busy("alpha", 3), busy("gamma", 0)), now=12.0)
    first, again, changed = (_wire(build_snapshot(CONFIG, s)) for s in (before, before, after))
    assert first == again
    diff = {(t, n) for t in first for n in first[t] if first[t][n] != changed[t].get(n)}
    assert diff == {(ENDPOINT_TYPE, "alpha")}


# -- the real Envoy binary validates what we build --------------------------------------


def static_bootstrap(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as static resources: inline routes for RDS, STATIC clusters for EDS."""
    boot = bootstrap_pb2.Bootstrap()
    admin = boot.admin.address.socket_address
    admin.address, admin.port_value = "127.0.0.1", 0
    for listener in snap.resources[LISTENER_TYPE].values():
        copy = boot.static_resources.listeners.add()
        copy.CopyFrom(listener)
        manager = hcm(snap)
        manager.ClearField("rds")
        manager.route_config.CopyFrom(snap.resources[ROUTE_TYPE]["public_routes"])
        copy.filter_chains[0].filters[0].typed_config.Pack(manager)
    for name, cluster in snap.resources[CLUSTER_TYPE].items():
        copy = boot.static_resources.clusters.add()
        copy.CopyFrom(cluster)
        copy.ClearField("eds_cluster_config")
        copy.type = cluster_pb2.Cluster.STATIC
        copy.load_assignment.CopyFrom(snap.resources[ENDPOINT_TYPE][name])
    return json_format.MessageToDict(boot)


def envoy_validate(config: FleetConfig, state: FleetState, tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(static_bootstrap(build_snapshot(config, state))))
    result = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.envoy
def test_envoy_accepts_every_resource(tmp_path: Path) -> None:
    state = fleet(
        node("n1", 8101, busy("alpha", 0), busy("meta-llama/Llama-3.1-8B", 4, queue=8)),
        node("n2", 8102, busy("alpha", 1), up=False),
        node("n3", 8103, busy("gamma", 0), last=0.0),
    )
    envoy_validate(CONFIG, state, tmp_path)
    envoy_validate(load_config(REPO / "examples" / "fleet.yaml"), FleetState(), tmp_path)


@pytest.mark.envoy
def test_envoy_rejects_a_broken_resource(tmp_path: Path) -> None:
    """The validation above can fail: a zero weight is refused, as Envoy NACKs it."""
    snap = build_snapshot(CONFIG, fleet(node("n1", 8101, busy("alpha", 0))))
    boot = static_bootstrap(snap)
    cluster = boot["staticResources"]["clusters"][0]
    cluster["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["loadBalancingWeight"] = 0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(boot))
    result = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "LoadBalancingWeight" in result.stdout + result.stderr


# -- the resources route as promised in a real Envoy (static bootstrap, no ADS) ---------


class _Backend(BaseHTTPRequestHandler):
    """A stand-in node: names itself; refuses admission when its name says so."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        name = self.server.node_name  # type: ignore[attr-defined]
        if name.startswith("stall"):  # never answers until the module's servers stop
            self.server.stop.wait(30)  # type: ignore[attr-defined]
            return
        if name.startswith("full"):
            error = {"message": f"{name} is full", "type": "rate_limit_error", "param": None}
            body = json.dumps({"error": {**error, "code": "rate_limit_exceeded"}})
            self.send_response(503)
            self.send_header("retry-after", "7")
            self.send_header("x-admission-rejected", "queue_full")
        else:
            body = json.dumps({"node": name, "model": self.headers.get("x-fleet-model")})
            self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-fleet-node", name)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, int]]:
    servers = {}
    stop = threading.Event()
    for name in ("ok-1", "full-1", "full-2", "stall-1"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
        server.node_name = name  # type: ignore[attr-defined]
        server.stop = stop  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    yield {name: s.server_address[1] for name, s in servers.items()}
    stop.set()
    for s in servers.values():
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def envoy_url(backends: dict[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, admin = free_port(), free_port()
    cfg = parse_config(
        f"""
listener: {{address: 127.0.0.1, port: {port}, max_request_bytes: 65536}}
models:
  - {{id: alpha, aliases: [smol]}}
  - {{id: gamma}}
  - {{id: meta-llama/Llama-3.1-8B}}
  - {{id: delta, retry_on_rejection: false}}
  - {{id: slow, idle_timeout_s: 0.3}}
"""
    )
    state = fleet(
        node("ok-1", backends["ok-1"], busy("alpha", 0), busy("delta", 3)),
        node(
            "full-1",
            backends["full-1"],
            busy("alpha", 0),
            busy("gamma", 0),
            busy("delta", 4, queue=8),
        ),
        node("full-2", backends["full-2"], busy("gamma", 0)),
        node("stall-1", backends["stall-1"], busy("slow", 0)),
        node("dead-1", free_port(), busy("alpha", 0)),  # nothing listens there
    )
    boot = static_bootstrap(build_snapshot(cfg, state))
    boot["admin"]["address"]["socketAddress"]["portValue"] = admin
    path = tmp_path_factory.mktemp("envoy") / "bootstrap.json"
    path.write_text(json.dumps(boot))
    group = ProcGroup(path.parent)
    group.start(
        "envoy",
        [
            find_envoy(),
            "-c",
            str(path),
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "-l",
            "warning",
        ],
    )
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{admin}/ready")[0] == 200,
        30,
        "envoy to be ready",
        on_timeout=group.logs,
    )
    yield f"http://127.0.0.1:{port}"
    group.stop_all()


def _post(url: str, raw: bytes, content_type: str = "application/json") -> tuple[int, dict, Any]:
    req = urllib.request.Request(url, data=raw, method="POST")
    req.add_header("content-type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, json.loads(err.read())


CHAT = "/v1/chat/completions"


@pytest.mark.envoy
def test_envoy_routes_by_body_model_and_retries_refusals(envoy_url: str) -> None:
    # alpha: one replica always refuses, one is dead; every request lands on the third
    for name in ("alpha", "smol") * 4:
        status, headers, body = http_json(
            envoy_url + CHAT, {"model": name, "messages": []}, headers={"x-fleet-model": "evil"}
        )
        assert (status, body) == (200, {"node": "ok-1", "model": "alpha"}), body
    # gamma: every replica refuses -> the node's own 503 reaches the client intact
    status, headers, body = http_json(envoy_url + "/v1/completions", {"model": "gamma"})
    assert status == 503
    assert headers["retry-after"] == "7" and headers["x-admission-rejected"] == "queue_full"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert body["error"]["message"] in ("full-1 is full", "full-2 is full")


@pytest.mark.envoy
def test_envoy_sends_nothing_to_a_full_replica_while_another_has_room(envoy_url: str) -> None:
    # delta: no retries, full-1 is DEGRADED (weight 1) and ok-1 busy but HEALTHY: with an
    # overprovisioning factor of 140 (Envoy's default) or 100, 30% or 50% of requests
    # would hit full-1 and fail
    nodes = [http_json(envoy_url + CHAT, {"model": "delta"})[2]["node"] for _ in range(30)]
    assert nodes == ["ok-1"] * 30


@pytest.mark.envoy
def test_envoy_answers_bad_requests_with_openai_envelopes(envoy_url: str) -> None:
    status, headers, body = http_json(envoy_url + CHAT, {"model": "nope"})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert "`nope`" in body["error"]["message"]
    assert headers["content-type"].startswith("application/json")
    payloads: list[dict[str, Any]] = [{"messages": []}, {"model": ""}]
    for payload in payloads:
        status, _, body = http_json(envoy_url + CHAT, payload)
        assert status == 400 and body["error"]["param"] == "model", payload
    status, _, body = _post(envoy_url + CHAT, b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, _, body = _post(envoy_url + CHAT, b'{"model": "alpha"}', "text/plain")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    # a model with no replica at all: Envoy's own 503, as an envelope
    status, _, body = http_json(envoy_url + CHAT, {"model": "meta-llama/Llama-3.1-8B"})
    assert status == 503 and body["error"]["code"] == "service_unavailable"
    status, _, body = _post(envoy_url + CHAT, b'{"model": "alpha", "p": "' + b"x" * 100_000 + b'"}')
    assert status == 413 and body["error"]["code"] == "request_too_large"
    status, _, body = http_json(envoy_url + "/v2/whatever")
    assert status == 404 and body["error"]["code"] == "unknown_url"
    # a node that goes silent longer than the model's idle timeout
    status, _, body = http_json(envoy_url + CHAT, {"model": "slow"}, timeout=20)
    assert status == 504, (status, body)
    assert body["error"]["code"] == "timeout"


@pytest.mark.envoy
def test_envoy_serves_the_live_model_catalog(envoy_url: str) -> None:
    status, headers, body = http_json(envoy_url + "/v1/models")
    assert status == 200 and headers["content-type"] == "application/json"
    assert [m["id"] for m in body["data"]] == ["alpha", "smol", "gamma", "delta", "slow"]
