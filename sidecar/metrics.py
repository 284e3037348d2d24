"""Prometheus view of the node's load, rendered from the latest state at scrape time.

A custom collector (rather than Gauge/Counter objects updated on each change) makes every
counter mirror the node's own total exactly, resets included, and drops a model's series
the moment the node stops serving it. Besides the ``fleet_*`` names it exports vLLM's
``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` (label ``model_name``) so
dashboards and the Gateway API Inference Extension built for vLLM read it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.node_state import MODEL_STATES, NodeState

REFUSAL_REASONS = ("queue_full", "timeout")


def node_metrics(state: NodeState, node: str) -> list[Metric]:
    """Every metric family for one node state (pure: a function of its arguments)."""
    up = GaugeMetricFamily(
        "fleet_node_up", "1 when the sidecar can read its node's /health", labels=["node"]
    )
    up.add_metric([node], 1.0 if state.up else 0.0)
    labels = ["node", "model"]
    model_state = GaugeMetricFamily(
        "fleet_model_state",
        "1 for the model's current state on the node",
        labels=[*labels, "state"],
    )
    running = GaugeMetricFamily(
        "fleet_model_running", "Requests being generated (holding a permit)", labels=labels
    )
    queued = GaugeMetricFamily(
        "fleet_model_queued", "Requests waiting in the admission queue", labels=labels
    )
    max_running = GaugeMetricFamily(
        "fleet_model_capacity_running", "Admission limit max_in_flight", labels=labels
    )
    max_queued = GaugeMetricFamily(
        "fleet_model_capacity_queue", "Admission limit max_queue_depth", labels=labels
    )
    admitted = CounterMetricFamily(
        "fleet_model_admitted", "Requests admitted (the node's admitted_total)", labels=labels
    )
    refused = CounterMetricFamily(
        "fleet_model_refused",
        "Requests refused with 503 by admission control, by x-admission-rejected reason",
        labels=[*labels, "reason"],
    )
    completed = CounterMetricFamily(
        "fleet_model_completed",
        "Requests that finished (the node's completed_total)",
        labels=labels,
    )
    decode_tps = GaugeMetricFamily(
        "fleet_model_decode_tokens_per_second",
        "EWMA completion tokens/s of generation (absent until a request has finished)",
        labels=labels,
    )
    vllm_running = GaugeMetricFamily(
        "vllm:num_requests_running", "Number of requests running (vLLM name)", labels=["model_name"]
    )
    vllm_waiting = GaugeMetricFamily(
        "vllm:num_requests_waiting", "Number of requests waiting (vLLM name)", labels=["model_name"]
    )
    # A down node's last-known load is stale: only fleet_node_up speaks for it.
    for m in state.models if state.up else ():
        key = [node, m.model]
        for s in MODEL_STATES:
            model_state.add_metric([*key, s], 1.0 if m.state == s else 0.0)
        running.add_metric(key, m.in_flight)
        queued.add_metric(key, m.queue_depth)
        max_running.add_metric(key, m.max_in_flight)
        max_queued.add_metric(key, m.max_queue_depth)
        admitted.add_metric(key, m.admitted_total)
        refused.add_metric([*key, "queue_full"], m.rejected_queue_full_total)
        refused.add_metric([*key, "timeout"], m.rejected_timeout_total)
        other = m.rejected_total - m.rejected_queue_full_total - m.rejected_timeout_total
        if other > 0:
            refused.add_metric([*key, "other"], other)
        completed.add_metric(key, m.completed_total)
        if m.decode_tps is not None:
            decode_tps.add_metric(key, m.decode_tps)
        vllm_running.add_metric([m.model], m.in_flight)
        vllm_waiting.add_metric([m.model], m.queue_depth)
    return [
        up,
        model_state,
        running,
        queued,
        max_running,
        max_queued,
        admitted,
        refused,
        completed,
        decode_tps,
        vllm_running,
        vllm_waiting,
    ]


class NodeCollector(Collector):
    def __init__(self, state: Callable[[], NodeState], node: Callable[[], str]) -> None:
        self._state = state
        self._node = node

    def collect(self) -> Iterable[Metric]:
        return node_metrics(self._state(), self._node())


def build_registry(state: Callable[[], NodeState], node: Callable[[], str]) -> CollectorRegistry:
    """The sidecar's own registry (never the global one, so tests can run many)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(state, node))
    return registry
