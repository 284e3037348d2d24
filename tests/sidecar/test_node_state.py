"""Parsing the node's /health into the state every report and metric is rendered from."""

from __future__ import annotations

import pytest

from fleet.proto import load_pb2
from sidecar.node_state import HealthFormatError, parse_health
from sidecar.report import Identity, build_report
from tests.sidecar.fake_node import health


def test_parses_models_sorted_and_ignores_read_time_for_equality():
    body = health(in_flight=1, queue_depth=2)
    body["models"].insert(0, {**body["models"][0], "id": "zeta"})
    a = parse_health(body, observed_unix_nanos=1)
    b = parse_health(body, observed_unix_nanos=2)
    assert [m.model for m in a.models] == ["alpha", "zeta"]
    assert a.up and a.name == "fake"
    assert a == b, "re-reading the same load is no change"
    assert a != parse_health(health(in_flight=2, queue_depth=2), 3)


def test_uptime_alone_is_no_change():
    body = health()
    later = {**body, "uptime_secs": 99.0}
    assert parse_health(body, 1) == parse_health(later, 2)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.pop("models"), "no 'models' list"),
        (lambda b: b["models"][0].pop("in_flight"), "missing 'in_flight'"),
        (lambda b: b["models"][0].update(in_flight=-1), "'in_flight' must be a count"),
        (lambda b: b["models"][0].update(queue_depth="3"), "'queue_depth' must be a count"),
        (lambda b: b["models"][0].update(state="sleeping"), "unknown state 'sleeping'"),
        (lambda b: b["models"][0].pop("id"), "no string 'id'"),
        (lambda b: b.update(node=5), "'node' must be a string"),
        (lambda b: b["models"][0].update(decode_tps="fast"), "'decode_tps' must be a number"),
        (lambda b: b["models"][0].update(decode_tps=True), "'decode_tps' must be a number"),
        (lambda b: b["models"][0].update(decode_tps=-1.0), "'decode_tps' must be >= 0"),
        (lambda b: b["models"][0].update(decode_tps=float("nan")), "'decode_tps' must be >= 0"),
    ],
)
def test_bad_health_is_a_clear_error(mutate, message):
    body = health()
    mutate(body)
    with pytest.raises(HealthFormatError, match=message):
        parse_health(body, 1)


def test_not_an_object():
    with pytest.raises(HealthFormatError, match="must be a JSON object"):
        parse_health([1, 2], 1)


def test_down_keeps_last_known_models_and_report_says_down():
    up = parse_health(health(in_flight=1), 10)
    down = up.down(20)
    report = build_report(down, sequence=7, heartbeat=False)
    assert not report.node_up
    assert [(m.model, m.in_flight) for m in report.models] == [("alpha", 1)]
    assert (report.sequence, report.observed_unix_nanos) == (7, 20)
    assert not report.HasField("node")


def test_first_report_carries_identity_and_model_state():
    state = parse_health(health(in_flight=2, queue_depth=1), 5)
    report = build_report(
        state, sequence=1, heartbeat=False, identity=Identity("n1", "10.0.0.1", 8101)
    )
    assert (report.node.name, report.node.address, report.node.port) == ("n1", "10.0.0.1", 8101)
    m = report.models[0]
    assert m.state == load_pb2.MODEL_STATE_LOADED
    assert (m.in_flight, m.queue_depth, m.max_in_flight, m.max_queue_depth) == (2, 1, 2, 4)
    assert report.node_up and not report.heartbeat


def test_decode_speed_is_parsed_and_reported_with_zero_for_unknown():
    fast = parse_health(health(decode_tps=42.5), 1)
    assert fast.models[0].decode_tps == 42.5
    assert build_report(fast, sequence=1, heartbeat=False).models[0].decode_tps == 42.5
    unknown = parse_health(health(), 1)  # "decode_tps": null before any request finished
    assert unknown.models[0].decode_tps is None
    assert build_report(unknown, sequence=1, heartbeat=False).models[0].decode_tps == 0.0
    older = health()
    del older["models"][0]["decode_tps"]  # a node from before decode_tps existed
    assert parse_health(older, 1).models[0].decode_tps is None
    assert parse_health(health(decode_tps=7), 1).models[0].decode_tps == 7.0
    assert fast != unknown, "a new speed is a change worth reporting"
