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
