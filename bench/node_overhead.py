"""What the node costs over bare ``model.generate``: tokens/s side by side in one run.

Same embedded model (SmolLM2-135M-Instruct, CPU float32 here), same prompts, greedy:
1. model load time of a node process, cold (empty cache: de-quantize the GGUF) and warm;
2. tokens/s: bare ``model.generate`` in this process vs the node over HTTP, non-streaming
   and streaming (modes interleaved per prompt so drift hits all three alike);
3. refusal latency: time to a 503 while the node's only slot is busy and its queue is 0.

    .venv/bin/python -m bench.node_overhead [--max-tokens 64] [--reps 2] [--refusals 50]

Writes bench/results/node_overhead.json and .md. Runs in about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from node.backends.transformers_backend import cpu_threads
from node.embedded import EMBEDDED_ID, cache_dir_for, embedded_gguf
from tests.node.nodeproc import RawStream, chat_body, model_health
from tests.procs import ProcGroup, free_port, wait_until

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a load balancer does in two sentences.",
    "List three uses of Python.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def start_node(group: ProcGroup, cache: Path, *args: str) -> tuple[str, float]:
    """Start a node serving the embedded model; seconds from spawn until it is loaded."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = group.fleet(
        "node",
        "node",
        "--name",
        "bench",
        "--listen",
        f"127.0.0.1:{port}",
        "--device",
        "cpu",
        *args,
        env={"FLEET_CACHE_DIR": str(cache)},
    )
    wait_until(
        lambda: model_health(base, EMBEDDED_ID)["state"] == "loaded",
        300,
        "embedded model loaded",
        interval=0.05,
        on_timeout=proc.log_text,
    )
    return base, time.monotonic() - started


def bare_model(cache: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ["FLEET_CACHE_DIR"] = str(cache)  # the very files the node loaded
    path = cache_dir_for(embedded_gguf())
    torch.set_num_threads(cpu_threads())  # the node's own setting: same work, same cores
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return tok, model


def run_bare(tok: Any, model: Any, prompt: str, max_tokens: int) -> tuple[int, float]:
    import torch

    ids = tok.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            ids,
            max_new_tokens=max_tokens,
            do_sample=False,
            attention_mask=torch.ones_like(ids),
            pad_token_id=tok.pad_token_id or tok.eos_token_id,
        )
    elapsed = time.perf_counter() - started
    return int(out.shape[1] - ids.shape[1]), elapsed


def run_json(client: httpx.Client, base: str, prompt: str, max_tokens: int) -> tuple[int, float]:
    body = {
        "model": EMBEDDED_ID,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    started = time.perf_counter()
    resp = client.post(f"{base}/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    resp.raise_for_status()
    return int(resp.json()["usage"]["completion_tokens"]), elapsed


def run_stream(
    client: httpx.Client, base: str, prompt: str, max_tokens: int
) -> tuple[int, float, float]:
    body = {
        "model": EMBEDDED_ID,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = None
    tokens = 0
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if first is None and event["choices"] and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])
    return tokens, time.perf_counter() - started, first or 0.0


def refusal_latency(base: str, n: int) -> dict[str, float]:
    holder = RawStream(base, "/v1/chat/completions", chat_body(EMBEDDED_ID, 4000, stream=True))
    try:
        holder.read_until(b"data: ")
        times = []
        with httpx.Client(timeout=30) as client:
            for _ in range(n):
                started = time.perf_counter()
                resp = client.post(f"{base}/v1/chat/completions", json=chat_body(EMBEDDED_ID, 4))
                times.append(time.perf_counter() - started)
                assert resp.status_code == 503, resp.text
                assert resp.headers["x-admission-rejected"] == "queue_full"
        return {
            "n": n,
            "p50_ms": 1000 * statistics.median(times),
            "p99_ms": 1000 * percentile(times, 99),
            "max_ms": 1000 * max(times),
        }
    finally:
        holder.close()


def summarise(rows: list[tuple[int, float]]) -> dict[str, float]:
    tokens = sum(r[0] for r in rows)
    seconds = sum(r[1] for r in rows)
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": tokens / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.node_overhead")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--refusals", type=int, default=50)
    args = parser.parse_args(argv)
    command = " ".join(["python -m bench.node_overhead", *(sys.argv[1:] if argv is None else argv)])

    with tempfile.TemporaryDirectory(prefix="node-bench-") as tmp:
        cache, logs = Path(tmp) / "cache", Path(tmp) / "logs"
        logs.mkdir()
        group = ProcGroup(logs)
        try:
            print("cold start (empty cache)...", flush=True)
            _, cold_s = start_node(group, cache)
            group.stop_all()
            print(f"  {cold_s:.1f}s; warm start...", flush=True)
            base, warm_s = start_node(
                group, cache, "--max-in-flight", "1", "--max-queue-depth", "0"
            )
            print(f"  {warm_s:.1f}s; loading the bare model in-process...", flush=True)
            tok, model = bare_model(cache)
            bare: list[tuple[int, float]] = []
            plain: list[tuple[int, float]] = []
            streamed: list[tuple[int, float]] = []
            ttft: list[float] = []
            with httpx.Client(timeout=300) as client:
                run_bare(tok, model, PROMPTS[0], 8)  # warm-ups
                run_json(client, base, PROMPTS[0], 8)
                for rep in range(args.reps):
                    for prompt in PROMPTS:
                        bare.append(run_bare(tok, model, prompt, args.max_tokens))
                        plain.append(run_json(client, base, prompt, args.max_tokens))
                        n, s, first = run_stream(client, base, prompt, args.max_tokens)
                        streamed.append((n, s))
                        ttft.append(first)
                    print(f"  rep {rep + 1}/{args.reps} done", flush=True)
            print("refusal latency...", flush=True)
            refusals = refusal_latency(base, args.refusals)
        finally:
            group.stop_all()

    result = {
        "command": command,
        "model": EMBEDDED_ID,
        "device": "cpu float32",
        "cpus": os.cpu_count(),
        "torch_threads": cpu_threads(),
        "max_tokens": args.max_tokens,
        "prompts": len(PROMPTS),
        "reps": args.reps,
        "load_seconds": {"cold_no_cache": round(cold_s, 2), "warm_cached": round(warm_s, 2)},
        "bare_generate": summarise(bare),
        "node_json": summarise(plain),
        "node_stream": {
            **summarise(streamed),
            "ttft_p50_ms": round(1000 * statistics.median(ttft), 1),
        },
        "refusal_latency": {k: round(v, 2) for k, v in refusals.items()},
    }
    for key in ("node_json", "node_stream"):
        result[key]["ratio_to_bare"] = round(
            result[key]["tokens_per_s"] / result["bare_generate"]["tokens_per_s"], 3
        )
    for key in ("bare_generate", "node_json", "node_stream"):
        result[key]["tokens_per_s"] = round(result[key]["tokens_per_s"], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "node_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "node_overhead.md").write_text(render(result))
    print(render(result))
    return 0


def render(r: dict[str, Any]) -> str:
    b, j, s = r["bare_generate"], r["node_json"], r["node_stream"]
    rl, ld = r["refusal_latency"], r["load_seconds"]
    return f"""# Node overhead

Command: `.venv/bin/{r["command"]}`

{r["cpus"]} CPUs shared with other work, {r["device"]}, {r["torch_threads"]} torch thread(s)
in both the node and the bare run, {r["prompts"]} prompts x {r["reps"]} reps, max_tokens
{r["max_tokens"]}, greedy. Modes are interleaved per prompt so background load hits all
three alike.

| path | tokens | seconds | tokens/s | ratio to bare |
| --- | ---: | ---: | ---: | ---: |
| bare `model.generate` | {b["tokens"]} | {b["seconds"]} | {b["tokens_per_s"]} | 1.000 |
| node, JSON | {j["tokens"]} | {j["seconds"]} | {j["tokens_per_s"]} | {j["ratio_to_bare"]} |
| node, SSE stream | {s["tokens"]} | {s["seconds"]} | {s["tokens_per_s"]} | {s["ratio_to_bare"]} |

Streaming time to first token (p50): {s["ttft_p50_ms"]} ms.

Refusal latency (slot busy, queue 0, {rl["n"]} sequential requests to 503):
p50 {rl["p50_ms"]} ms, p99 {rl["p99_ms"]} ms, max {rl["max_ms"]} ms.

Model load, node process spawn to `state: loaded`: cold (empty cache, GGUF de-quantized
and cached) {ld["cold_no_cache"]} s; warm (cache hit) {ld["warm_cached"]} s.
"""


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the node processes started here are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
