"""Open-loop replay of a trace against an OpenAI endpoint, measuring TTFT and end-to-end.

Open loop: each request is sent at its trace time whatever happened to earlier ones, so a
slow fleet is not excused by the client slowing down. One asyncio loop and one pooled
httpx client keep the generator cheap next to the fleet on a 2-core box.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from bench.common import Outcome
from bench.workload import Request

TEMPLATE_TOKENS = 10  # the sim's chat template adds "<|user|>" and "<|assistant|>"


def prompt_text(tokens: int) -> str:
    """A user message the sim node counts as ``tokens`` prompt tokens in all."""
    return " ".join(["w"] * max(1, tokens - TEMPLATE_TOKENS))


async def one(
    client: httpx.AsyncClient, url: str, model: str, req: Request, sent: float
) -> Outcome:
    """Stream one chat completion; TTFT is the first chunk carrying content."""
    body = {
        "model": model,
        "stream": True,
        "max_tokens": req.output_tokens,
        "messages": [{"role": "user", "content": prompt_text(req.prompt_tokens)}],
    }
    ttft: float | None = None
    tokens = 0
    try:
        async with client.stream("POST", url, json=body) as resp:
            node = resp.headers.get("x-fleet-node")
            if resp.status_code != 200:
                await resp.aread()
                reason = resp.headers.get("x-admission-rejected", "")
                return Outcome(req.id, resp.status_code, node, None, None, reason=reason)
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    tokens += 1
                    if ttft is None:
                        ttft = time.perf_counter() - sent
    except httpx.HTTPError as exc:
        return Outcome(req.id, 0, None, None, None, reason=type(exc).__name__)
    return Outcome(req.id, 200, node, ttft, time.perf_counter() - sent, output_tokens=tokens)


async def replay(
    trace: list[Request], url: str, model: str = "alpha", timeout_s: float = 120.0
) -> list[Outcome]:
    """Send every request at its arrival time; return outcomes in trace order."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    timeout = httpx.Timeout(timeout_s, connect=5.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        tasks = []
        for req in trace:
            delay = start + req.arrival_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            tasks.append(asyncio.create_task(one(client, url, model, req, sent)))
        return list(await asyncio.gather(*tasks))
