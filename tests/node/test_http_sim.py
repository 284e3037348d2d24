"""The node over HTTP with the sim backend: admission contract, streaming, disconnects,
/health/stream, bad input, shutdown. One shared node process for the module; tests that
need other flags start their own."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.node.nodeproc import RawStream, chat_body, model_health, start_node
from tests.procs import ProcGroup, http_json, port_is_free, wait_until

MODEL = "alpha"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    group = ProcGroup(tmp_path_factory.mktemp("node"))
    try:
        _, base = start_node(
            group,
            "--model",
            f"{MODEL}=sim",
            "--model",
            "beta=sim",
            "--max-in-flight",
            "2",
            "--max-queue-depth",
            "2",
            "--max-wait-s",
            "30",
            "--sim-decode-tps",
            "50",
            "--max-body-bytes",
            "65536",
            name="simnode",
        )
        yield base
    finally:
        group.stop_all()


def assert_rejection(status: int, headers: dict[str, str], body: dict, reason: str) -> None:
    assert status == 503
    assert headers["x-admission-rejected"] == reason
    assert 1 <= int(headers["retry-after"]) <= 120
    assert headers["content-type"].startswith("application/json")
    assert headers["x-fleet-node"] == "simnode"
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert body["error"]["param"] is None and body["error"]["message"]


def test_chat_completion_json(node: str):
    status, headers, body = http_json(f"{node}/v1/chat/completions", chat_body(MODEL, 4))
    assert status == 200
    assert headers["x-fleet-node"] == "simnode" and headers["x-fleet-backend"] == "sim"
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert len(body["choices"][0]["message"]["content"].split()) == 4
    usage = body["usage"]
    assert usage["completion_tokens"] == 4 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 4


def test_alias_routed_by_envoy_uses_the_canonical_id_header(node: str):
    url = f"{node}/v1/chat/completions"
    body = chat_body("alpha-latest", 2)  # an alias: Envoy routes it, the body keeps it
    status, _, reply = http_json(url, body, headers={"x-fleet-model": MODEL})
    assert status == 200 and reply["model"] == MODEL
    status, _, reply = http_json(url, body)
    assert status == 404 and reply["error"]["code"] == "model_not_found"
    # A header naming no model served here does not override the body.
    status, _, reply = http_json(url, chat_body("beta", 2), headers={"x-fleet-model": "nope"})
    assert status == 200 and reply["model"] == "beta"


def test_sim_is_deterministic_per_seed_and_honours_stop(node: str):
    url = f"{node}/v1/chat/completions"
    one = http_json(url, chat_body(MODEL, 8, seed=7))[2]["choices"][0]["message"]["content"]
    two = http_json(url, chat_body(MODEL, 8, seed=7))[2]["choices"][0]["message"]["content"]
    assert one == two
    words = one.split()
    stop = " " + words[2]
    body = http_json(url, chat_body(MODEL, 8, seed=7, stop=[stop]))[2]
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == one[: one.index(stop)]


def test_completions_and_models(node: str):
    status, headers, body = http_json(
        f"{node}/v1/completions", {"model": MODEL, "prompt": "Once upon", "max_tokens": 3}
    )
    assert status == 200 and headers["x-fleet-backend"] == "sim"
    assert body["object"] == "text_completion"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    status, headers, models = http_json(f"{node}/v1/models")
    assert status == 200 and headers["x-fleet-node"] == "simnode"
    assert {m["id"] for m in models["data"]} == {MODEL, "beta"}


def test_streaming_chat_with_usage(node: str):
    stream = RawStream(
        node,
        "/v1/chat/completions",
        chat_body(MODEL, 3, stream=True, stream_options={"include_usage": True}),
    )
    raw = stream.read_until(b"data: [DONE]")
    stream.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b"text/event-stream" in head.lower() and b"x-fleet-backend: sim" in head.lower()
    events = [
        json.loads(line[6:]) for line in payload.decode().split("\n") if line.startswith("data: {")
    ]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum(1 for e in events if e["choices"] and e["choices"][0]["delta"].get("content")) == 3
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 3


def test_burst_admits_exactly_capacity_and_refuses_the_rest_at_once(node: str):
    before = model_health(node, MODEL)
    capacity = before["max_in_flight"] + before["max_queue_depth"]
    n = capacity + 5
    barrier = threading.Barrier(n)

    def one(_: int) -> tuple[int, dict, dict, float]:
        barrier.wait()
        status, headers, body = http_json(
            f"{node}/v1/chat/completions", chat_body(MODEL, max_tokens=40), timeout=30
        )
        return status, headers, body, time.monotonic()

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert len(ok) == capacity
    assert len(refused) == n - capacity
    for status, headers, body, _ in refused:
        assert_rejection(status, headers, body, "queue_full")
    # Refusals came back while the admitted requests were still generating.
    assert max(r[3] for r in refused) < min(r[3] for r in ok)
    after = model_health(node, MODEL)
    assert after["admitted_total"] - before["admitted_total"] == capacity
    assert after["rejected_queue_full_total"] - before["rejected_queue_full_total"] == n - capacity
    assert after["in_flight"] == 0 and after["queue_depth"] == 0


def fill(node: str, model: str) -> list[RawStream]:
    """Occupy every run slot and queue place of ``model`` with long streams."""
    health = model_health(node, model)
    holders = []
    for _ in range(health["max_in_flight"] + health["max_queue_depth"]):
        holders.append(RawStream(node, "/v1/chat/completions", chat_body(model, 5000, True)))
    wait_until(
        lambda: (
            (h := model_health(node, model))["in_flight"] == health["max_in_flight"]
            and h["queue_depth"] == health["max_queue_depth"]
        ),
        10,
        "model saturated",
    )
    return holders


def test_streaming_request_is_refused_before_the_stream_opens(node: str):
    holders = fill(node, "beta")
    try:
        status, headers, body = http_json(
            f"{node}/v1/chat/completions", chat_body("beta", 5, stream=True)
        )
        assert_rejection(status, headers, body, "queue_full")
        assert "text/event-stream" not in headers["content-type"]
    finally:
        for h in holders:
            h.close()
    wait_until(lambda: model_health(node, "beta")["in_flight"] == 0, 10, "beta drained")


def test_disconnect_mid_stream_frees_the_permit_and_stops_generating(node: str):
    before = model_health(node, MODEL)
    stream = RawStream(node, "/v1/chat/completions", chat_body(MODEL, 100_000, stream=True))
    stream.read_until(b'"content": " ')  # generation is under way
    assert model_health(node, MODEL)["in_flight"] == 1
    stream.close()
    # 100k tokens at 50 tok/s would hold the slot for half an hour.
    wait_until(lambda: model_health(node, MODEL)["in_flight"] == 0, 10, "permit released")
    after = model_health(node, MODEL)
    assert after["completed_total"] == before["completed_total"]
    assert after["admitted_total"] == before["admitted_total"] + 1


def test_disconnect_while_queued_leaves_the_queue(node: str):
    holders = fill(node, "beta")
    try:
        status, _, _ = http_json(f"{node}/v1/chat/completions", chat_body("beta", 5), timeout=5)
        assert status == 503
        holders[-1].close()  # a queued one hangs up
        wait_until(lambda: model_health(node, "beta")["queue_depth"] == 1, 10, "queued client gone")
    finally:
        for h in holders:
            h.close()
    wait_until(lambda: model_health(node, "beta")["in_flight"] == 0, 10, "beta drained")


def test_health_stream_pushes_on_change_and_keeps_alive(node: str):
    with httpx.Client(timeout=10) as client, client.stream("GET", f"{node}/health/stream") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-fleet-node"] == "simnode"
        lines = (line for line in resp.iter_lines() if line.startswith("data: "))
        first = json.loads(next(lines)[6:])
        start = next(m for m in first["models"] if m["id"] == MODEL)["admitted_total"]
        threading.Thread(
            target=http_json,
            args=(f"{node}/v1/chat/completions", chat_body(MODEL, 2)),
            daemon=True,
        ).start()
        seen_running = False
        for line in lines:
            snap = next(m for m in json.loads(line[6:])["models"] if m["id"] == MODEL)
            if snap["admitted_total"] == start + 1 and snap["in_flight"] == 1:
                seen_running = True
            if seen_running and snap["in_flight"] == 0:
                break
        assert seen_running
        # With nothing changing, keepalive events keep arriving.
        idle = [json.loads(next(lines)[6:]) for _ in range(2)]
        assert idle[1]["uptime_secs"] > idle[0]["uptime_secs"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b'{"model": "alpha"}', 400, "messages"),
        (b'{"model": "alpha", "messages": []}', 400, "messages"),
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}',
            400,
            "max_tokens",
        ),
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": NaN}',
            400,
            None,
        ),
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": "x"}], "top_p": 1.01}',
            400,
            "top_p",
        ),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ],
)
def test_bad_input_gets_an_openai_error(node: str, body: bytes, status: int, param):
    resp = httpx.post(
        f"{node}/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == status
    assert resp.headers["x-fleet-node"] == "simnode"
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error"
    if status == 404:
        assert err["code"] == "model_not_found"
    if param:
        assert err["param"] == param


def test_oversized_body_wrong_method_unknown_path(node: str):
    big = httpx.post(f"{node}/v1/chat/completions", content=b"x" * 100_000)
    assert big.status_code == 413 and big.headers["x-fleet-node"] == "simnode"
    assert big.json()["error"]["message"]
    get = httpx.get(f"{node}/v1/chat/completions")
    assert get.status_code == 405 and "error" in get.json()
    missing = httpx.get(f"{node}/v2/whatever")
    assert missing.status_code == 404 and missing.headers["x-fleet-node"] == "simnode"
    assert missing.json()["error"]["type"] == "invalid_request_error"


def test_queue_wait_timeout(procs: ProcGroup):
    _, base = start_node(
        procs,
        "--model",
        "m=sim",
        "--max-in-flight",
        "1",
        "--max-queue-depth",
        "1",
        "--max-wait-s",
        "0.2",
        name="tnode",
    )
    holder = RawStream(base, "/v1/chat/completions", chat_body("m", 5000, stream=True))
    try:
        holder.read_until(b"data: ")
        status, headers, body = http_json(f"{base}/v1/chat/completions", chat_body("m", 2))
        assert status == 503
        assert headers["x-admission-rejected"] == "timeout"
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert model_health(base, "m")["rejected_timeout_total"] == 1
    finally:
        holder.close()


def test_model_that_fails_to_load_answers_503_not_ready(procs: ProcGroup, tmp_path: Path):
    _, base = start_node(
        procs,
        "--model",
        f"broken={tmp_path}",
        "--model",
        "ok=sim",
        ready_model="broken",
        name="fnode",
    )
    health = model_health(base, "broken")
    assert health["state"] == "failed" and "config.json" in health["error"]
    status, headers, body = http_json(f"{base}/v1/chat/completions", chat_body("broken"))
    assert status == 503 and "x-admission-rejected" not in headers
    assert 1 <= int(headers["retry-after"]) <= 120
    assert body["error"]["type"] == "service_unavailable_error"
    assert body["error"]["code"] == "model_not_ready"
    assert http_json(f"{base}/v1/chat/completions", chat_body("ok"))[0] == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_streams_exits_zero_and_frees_the_port(procs: ProcGroup, sig: int):
    proc, base = start_node(procs, "--model", "m=sim", name="snode")
    port = int(base.rsplit(":", 1)[1])
    stream = RawStream(base, "/v1/chat/completions", chat_body("m", 100_000, stream=True))
    stream.read_until(b"data: ")
    proc.send_signal(sig)
    stream.read_all()  # the server ends the stream instead of hanging
    stream.close()
    assert proc.popen.wait(15) == 0
    assert port_is_free(port)  # a restarted node could bind it right away
    assert "listening" in proc.log_text()


def test_retry_after_follows_measured_service_time(procs: ProcGroup):
    """Before anything completed, Retry-After uses the prior; after 1 s requests, it says
    how long the queue ahead takes at that speed."""
    _, base = start_node(
        procs,
        "--model",
        "m=sim",
        "--max-in-flight",
        "1",
        "--max-queue-depth",
        "2",
        "--sim-decode-tps",
        "50",
        name="rnode",
    )

    def refused_retry_after() -> int:
        holders = fill(base, "m")
        try:
            status, headers, _ = http_json(f"{base}/v1/chat/completions", chat_body("m", 2))
            assert status == 503
            return int(headers["retry-after"])
        finally:
            for h in holders:
                h.close()
            wait_until(lambda: model_health(base, "m")["in_flight"] == 0, 10, "drained")

    assert refused_retry_after() == 1  # prior: 16 tokens at 50 tok/s, 3 deep → 1 s
    # Cancelled requests say nothing of speed: unknown until one finishes.
    assert model_health(base, "m")["decode_tps"] is None
    for _ in range(2):  # two 1-second requests (50 tokens at 50 tok/s)
        assert http_json(f"{base}/v1/chat/completions", chat_body("m", 50), timeout=30)[0] == 200
    assert 35 <= model_health(base, "m")["decode_tps"] <= 51, "measures --sim-decode-tps"
    # 2 queued ahead + this one, ~1 s each, one at a time: about 3 s.
    assert 3 <= refused_retry_after() <= 6


def test_cli_rejects_bad_flags(procs: ProcGroup):
    for args in (
        ["--model", "x=/no/such/dir"],
        ["--max-in-flight", "0"],
        ["--model", "a=sim", "--model", "a=sim"],
        ["--listen", "nohost"],
    ):
        proc = procs.fleet("bad", "node", *args)
        assert proc.popen.wait(30) == 2, args
