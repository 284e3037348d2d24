"""The ideal JSQ/shortest-expected-delay simulation, on hand-checkable traces."""

from __future__ import annotations

import pytest

from bench.common import Outcome, summarize
from bench.ideal import simulate
from bench.workload import NodeSpec, Request, generate


def node(name: str, tps: float, slots: int = 1, queue: int = 0, wait: float = 10) -> NodeSpec:
    # prefill_tps is huge so service time is output_tokens / tps.
    return NodeSpec(name, tps, 1e9, slots, queue, wait)


def req(i: int, at: float, out: int = 10) -> Request:
    return Request(i, at, prompt_tokens=1, output_tokens=out)


def test_a_lone_request_takes_its_service_time_on_the_fastest_node() -> None:
    (o,) = simulate([req(0, 0.0)], [node("slow", 5), node("fast", 10)], 1, 10)
    assert o.ok and o.node == "fast"
    assert o.e2e_s == pytest.approx(1.0)
    assert o.ttft_s == pytest.approx(0.1)


def test_second_request_spills_to_the_slow_node_when_waiting_would_be_longer() -> None:
    nodes = [node("fast", 10, queue=4), node("slow", 8, queue=4)]
    a, b = simulate([req(0, 0.0), req(1, 0.0)], nodes, 1, 10)
    assert (a.node, b.node) == ("fast", "slow")
    assert b.e2e_s == pytest.approx(1.25)


def test_queueing_beats_a_much_slower_node() -> None:
    nodes = [node("fast", 10, queue=4), node("slow", 1, queue=4)]
    a, b = simulate([req(0, 0.0), req(1, 0.0)], nodes, 1, 10)
    assert (a.node, b.node) == ("fast", "fast")
    assert b.e2e_s == pytest.approx(2.0)  # waited 1 s for the slot, then 1 s of service
    assert b.ttft_s == pytest.approx(1.1)


def test_full_fleet_refuses_and_queue_timeout_refuses() -> None:
    full = simulate([req(0, 0.0), req(1, 0.0)], [node("only", 10, queue=0)], 1, 10)
    assert [o.status for o in full] == [200, 503]
    assert full[1].reason == "queue_full"
    timed = simulate(
        [req(0, 0.0, out=100), req(1, 0.0)], [node("only", 10, queue=1, wait=2)], 1, 100
    )
    assert [o.status for o in timed] == [200, 503]
    assert timed[1].reason == "timeout"


def test_every_request_has_an_outcome_and_load_beyond_capacity_is_refused() -> None:
    nodes = [node("a", 20, slots=2, queue=2, wait=3), node("b", 10, slots=2, queue=2, wait=3)]
    trace = generate(seed=5, rate_rps=40, duration_s=20)
    outcomes = simulate(trace, nodes, 120, 30)
    assert [o.id for o in outcomes] == [r.id for r in trace]
    summary = summarize(outcomes, 20)
    assert summary["refusal_rate"] > 0.5  # ~40 rps offered to a fleet of a few rps
    assert summary["ok"] + summary["refused"] == len(trace)


def test_no_nodes_is_an_error() -> None:
    with pytest.raises(ValueError):
        simulate([req(0, 0.0)], [], 1, 1)


def test_summary_counts_refusals_apart_from_latency_and_goodput() -> None:
    outcomes = [
        Outcome(0, 200, "a", ttft_s=0.1, e2e_s=1.0, output_tokens=10),
        Outcome(1, 200, "b", ttft_s=0.3, e2e_s=3.0, output_tokens=30),
        Outcome.refused(2, "queue_full"),
        Outcome(3, 0, None, None, None, reason="ReadTimeout"),
    ]
    s = summarize(outcomes, duration_s=10)
    assert (s["ok"], s["refused"], s["errors"]) == (2, 1, 1)
    assert s["refusal_rate"] == 0.25
    assert s["e2e_ms"]["p50"] == 2000.0  # refusals and errors carry no latency
    assert s["goodput_rps"] == 0.2 and s["goodput_tokens_per_s"] == 4.0
    assert s["by_node"] == {"a": 1, "b": 1}
    assert summarize([], 1)["e2e_ms"]["p99"] is None
