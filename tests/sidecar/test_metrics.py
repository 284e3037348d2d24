"""The /metrics text rendered from a node state (what any Prometheus would scrape)."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.metrics import build_registry
from sidecar.node_state import NodeState, parse_health
from tests.sidecar.fake_node import health


def scrape(state: NodeState) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(build_registry(lambda: state, lambda: "n1")).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


def busy() -> NodeState:
    body = health(in_flight=2, queue_depth=3)
    body["models"][0].update(
        admitted_total=40,
        rejected_total=9,
        rejected_queue_full_total=5,
        rejected_timeout_total=3,
        completed_total=38,
        state="loaded",
    )
    return parse_health(body, 1)


def test_gauges_and_counters_mirror_the_node():
    m = scrape(busy())
    mk = {"node": "n1", "model": "alpha"}
    assert m[key("fleet_node_up", node="n1")] == 1
    assert m[key("fleet_model_running", **mk)] == 2
    assert m[key("fleet_model_queued", **mk)] == 3
    assert m[key("fleet_model_capacity_running", **mk)] == 2
    assert m[key("fleet_model_capacity_queue", **mk)] == 4
    assert m[key("fleet_model_admitted_total", **mk)] == 40
    assert m[key("fleet_model_completed_total", **mk)] == 38
    assert m[key("fleet_model_refused_total", **mk, reason="queue_full")] == 5
    assert m[key("fleet_model_refused_total", **mk, reason="timeout")] == 3
    # Refusals the node did not attribute stay visible instead of vanishing.
    assert m[key("fleet_model_refused_total", **mk, reason="other")] == 1
    assert m[key("fleet_model_state", **mk, state="loaded")] == 1
    assert m[key("fleet_model_state", **mk, state="loading")] == 0


def test_vllm_compatible_names():
    m = scrape(busy())
    assert m[key("vllm:num_requests_running", model_name="alpha")] == 2
    assert m[key("vllm:num_requests_waiting", model_name="alpha")] == 3


def test_a_down_node_exports_no_stale_load():
    m = scrape(busy().down(2))
    assert m[key("fleet_node_up", node="n1")] == 0
    assert not [k for k in m if k[0].startswith(("fleet_model_", "vllm:"))]


def test_decode_speed_gauge_only_once_measured():
    mk = {"node": "n1", "model": "alpha"}
    m = scrape(parse_health(health(decode_tps=31.25), 1))
    assert m[key("fleet_model_decode_tokens_per_second", **mk)] == 31.25
    m = scrape(parse_health(health(), 1))
    assert key("fleet_model_decode_tokens_per_second", **mk) not in m, "unknown is no series"
