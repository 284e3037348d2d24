"""Through real Envoy: model routing, least-busy replicas, backpressure, retry, streaming.

One fleet for the module: node-1 serves alpha and m, node-2 serves beta and m (all sim,
FULL in flight per model, no queue), so m has two replicas and alpha/beta one each.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.harness import FULL, LONG, SIM_DECODE_TPS, PieceFleet, chat_body
from tests.procs import ProcGroup, wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(180)]

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def fleet(module_procs: ProcGroup) -> Iterator[PieceFleet]:
    f = PieceFleet(
        module_procs,
        module_procs.log_dir,
        {"node-1": ["alpha=sim", "m=sim"], "node-2": ["beta=sim", "m=sim"]},
    )
    yield f
    f.close()


@pytest.fixture
def sdk(fleet: PieceFleet) -> openai.OpenAI:
    return openai.OpenAI(base_url=fleet.base_url, api_key="unused", max_retries=0, timeout=30)


def full_beside_idle(busy: dict | None, idle: dict | None) -> bool:
    """Envoy sees ``busy`` full (DEGRADED) and ``idle`` healthy at full weight."""
    if not busy or not idle:
        return False
    return (
        busy["health"].get("eds_health_status") == "DEGRADED"
        and idle["health"].get("eds_health_status") in (None, "HEALTHY")
        and idle["weight"] > busy["weight"]
    )


# 1. Model routing ------------------------------------------------------------------------


def test_each_request_lands_on_a_node_serving_its_model(sdk):
    for model, node in (("alpha", "node-1"), ("beta", "node-2")) * 3:
        raw = sdk.chat.completions.with_raw_response.create(
            model=model, messages=QUESTION, max_tokens=2
        )
        assert raw.headers["x-fleet-node"] == node
        assert raw.parse().model == model


def test_unknown_model_is_a_404_model_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as err:
        sdk.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"


def test_malformed_json_is_a_400_envelope(fleet):
    resp = fleet.client.post(
        "/chat/completions",
        content=b'{"model": "alpha", ',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_models_endpoint_lists_the_live_catalog(sdk):
    assert {m.id for m in sdk.models.list()} == {"alpha", "beta", "m"}


# 2. Least-busy across replicas ----------------------------------------------------------


def test_requests_go_to_the_idle_replica_and_follow_when_load_flips(fleet):
    for busy, idle in (("node-1", "node-2"), ("node-2", "node-1")):
        retries = fleet.envoy.counter("upstream_rq_retry")
        rejected = fleet.nodes[busy].model("m")["rejected_total"]
        with fleet.hold(busy, "m", FULL):
            fleet.wait_envoy(
                "m",
                lambda h, b=busy, i=idle: full_beside_idle(h[b], h[i]),
                f"Envoy to see {busy} busy",
            )
            assert set(fleet.served_by("m", 10)) == {idle}
            # Routed there by weight, not bounced off the busy node by a retry.
            assert fleet.nodes[busy].model("m")["rejected_total"] == rejected
            assert fleet.envoy.counter("upstream_rq_retry") == retries


def test_equal_load_gives_equal_weights_and_shares_traffic(fleet):
    fleet.wait_envoy(
        "m", lambda h: h["node-1"]["weight"] == h["node-2"]["weight"], "equal weights when idle"
    )

    # Concurrent, so Envoy's own in-flight view breaks the tie; sequential requests on
    # equal weights may all pick one host (each request's load report rebuilds the LB).
    def one(_: int) -> str:
        resp = httpx.post(
            f"{fleet.base_url}/chat/completions", json=chat_body("m", SIM_DECODE_TPS), timeout=30
        )
        assert resp.status_code == 200, resp.text
        return resp.headers["x-fleet-node"]

    with ThreadPoolExecutor(FULL) as pool:
        served = list(pool.map(one, range(FULL)))
    assert set(served) == {"node-1", "node-2"}, served


# 3. Backpressure intact -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_every_replica_full_passes_the_nodes_503_through_intact(fleet, stream):
    with fleet.hold("node-1", "m", FULL), fleet.hold("node-2", "m", FULL):
        via_envoy = fleet.client.post(
            "/chat/completions", json=chat_body("m", stream=stream), timeout=10
        )
        node = fleet.nodes[via_envoy.headers["x-fleet-node"]]
        direct = httpx.post(
            f"{node.url}/v1/chat/completions", json=chat_body("m", stream=stream), timeout=10
        )
    assert via_envoy.status_code == direct.status_code == 503
    assert via_envoy.headers["retry-after"] == direct.headers["retry-after"]
    assert int(via_envoy.headers["retry-after"]) >= 1
    assert via_envoy.headers["x-admission-rejected"] == "queue_full"
    assert via_envoy.content == direct.content
    assert via_envoy.json()["error"]["code"] == "rate_limit_exceeded"


def test_the_sdk_sees_a_clean_503_when_everything_is_full(fleet, sdk):
    with fleet.hold("node-1", "m", FULL), fleet.hold("node-2", "m", FULL):
        with pytest.raises(openai.APIStatusError) as err:
            sdk.chat.completions.create(model="m", messages=QUESTION, max_tokens=2)
        with pytest.raises(openai.APIStatusError) as err_stream:
            for _ in sdk.chat.completions.create(
                model="m", messages=QUESTION, max_tokens=2, stream=True
            ):
                pass
    for e in (err.value, err_stream.value):
        assert e.status_code == 503
        assert e.response.headers["retry-after"]
        assert e.code == "rate_limit_exceeded"


# 4. Retry on another replica ------------------------------------------------------------


def test_a_refusal_from_a_replica_that_looks_idle_is_retried_once_elsewhere(fleet):
    fleet.wait_envoy("m", lambda h: h["node-1"]["weight"] == h["node-2"]["weight"] > 1, "both idle")
    fleet.pause_sidecar("node-1")  # the control plane keeps believing node-1 is idle
    try:
        rejected = fleet.nodes["node-1"].model("m")["rejected_total"]
        with fleet.hold("node-1", "m", FULL):
            assert fleet.view("m")["node-1"]["weight"] > 1
            retried = 0
            for _ in range(10):
                before = fleet.envoy.counter("upstream_rq_retry")
                resp = fleet.chat("m")
                delta = fleet.envoy.counter("upstream_rq_retry") - before
                assert resp.status_code == 200, resp.text
                assert resp.headers["x-fleet-node"] == "node-2"
                assert delta in (0, 1)
                retried += delta
        assert retried >= 1, "Envoy never tried the full node: the test proved nothing"
        assert fleet.nodes["node-1"].model("m")["rejected_total"] == rejected + retried
    finally:
        fleet.resume_sidecar("node-1")


# 5. Streaming ---------------------------------------------------------------------------


def test_streaming_arrives_as_the_node_emits_it(sdk):
    arrivals = []
    for chunk in sdk.chat.completions.create(
        model="alpha", messages=QUESTION, max_tokens=10, stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
    assert len(arrivals) >= 5
    # Buffered, every chunk would arrive at once; as emitted they spread over the decode.
    assert arrivals[-1] - arrivals[0] >= 0.5 * (len(arrivals) - 1) / SIM_DECODE_TPS


def test_a_client_disconnect_frees_the_nodes_permit(fleet):
    node = fleet.nodes["node-1"]
    with fleet.client.stream("POST", "/chat/completions", json=chat_body("alpha", LONG, True)) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        wait_until(lambda: next(lines).startswith("data:"), 10, "the first chunk")
        assert r.headers["x-fleet-node"] == "node-1"
        assert node.model("alpha")["in_flight"] == 1
    wait_until(lambda: node.model("alpha")["in_flight"] == 0, 10, "the permit to be released")
