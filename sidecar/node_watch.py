"""Reading the node's load: its /health/stream (SSE) first, polling /health as a fallback.

The stream pushes every admission change within ~1 ms of it happening; polling costs a
request per interval and adds up to one interval of delay, so it is used only when the node
has no stream endpoint (404). A stream silent for longer than ``silence_s`` (the node sends
a keepalive each second) counts as broken, and any failure to read marks the node down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

import httpx

from sidecar.node_state import HealthFormatError, NodeState, parse_health

log = logging.getLogger("sidecar.node")

Source = Literal["auto", "stream", "poll"]


class StreamMissing(Exception):
    """The node answered 404 on /health/stream: it only supports polling."""


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` payload of each server-sent event (multi-line data joined by newlines)."""
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


class NodeWatcher:
    def __init__(
        self,
        node_url: str,
        on_state: Callable[[NodeState], object],
        current: Callable[[], NodeState],
        *,
        source: Source = "auto",
        poll_interval_s: float = 0.05,
        silence_s: float = 3.0,
        request_timeout_s: float = 1.0,
        retry_max_s: float = 1.0,
    ) -> None:
        self._url = node_url.rstrip("/")
        self._on_state = on_state
        self._current = current
        self._source: Source = source
        self._poll_interval_s = poll_interval_s
        self._silence_s = silence_s
        self._timeout_s = request_timeout_s
        self._retry_max_s = retry_max_s
        self._failures = 0

    def _up(self, body: str) -> None:
        state = parse_health(json.loads(body), time.time_ns())
        if self._failures:
            log.info("node reachable again", extra={"fields": {"node": self._url}})
        self._failures = 0
        self._on_state(state)

    def _down(self, exc: BaseException) -> None:
        if self._failures == 0:
            log.warning(
                "cannot read the node; reporting it down",
                extra={"fields": {"node": self._url, "error": f"{type(exc).__name__}: {exc}"}},
            )
        self._failures += 1
        self._on_state(self._current().down(time.time_ns()))

    async def _pause_after_failure(self) -> None:
        """Retry fast at first (a node restart), then back off to ``retry_max_s``."""
        await asyncio.sleep(min(self._retry_max_s, 0.05 * 2 ** min(self._failures, 10)))

    async def run(self) -> None:
        """Read forever (until cancelled)."""
        async with httpx.AsyncClient(trust_env=False) as client:
            while True:
                if self._source == "poll":
                    await self._poll_forever(client)
                    return
                try:
                    await self._stream_once(client)
                except StreamMissing:
                    if self._source == "stream":
                        self._down(StreamMissing("the node has no /health/stream (404)"))
                        await self._pause_after_failure()
                        continue
                    log.info(
                        "node has no /health/stream; polling /health",
                        extra={"fields": {"interval_s": self._poll_interval_s}},
                    )
                    self._source = "poll"
                except (httpx.HTTPError, HealthFormatError, ValueError) as exc:
                    self._down(exc)
                    await self._pause_after_failure()
                except Exception as exc:  # a surprise must not end reading for good
                    log.exception("unexpected error reading the node")
                    self._down(exc)
                    await self._pause_after_failure()

    async def _stream_once(self, client: httpx.AsyncClient) -> None:
        timeout = httpx.Timeout(self._timeout_s, read=self._silence_s)
        async with client.stream("GET", f"{self._url}/health/stream", timeout=timeout) as resp:
            if resp.status_code == 404:
                raise StreamMissing()
            resp.raise_for_status()
            async for data in sse_data(resp.aiter_lines()):
                self._up(data)
        # The node closed the stream (a restart or shutdown): reconnecting tells which.

    async def _poll_forever(self, client: httpx.AsyncClient) -> None:
        url = f"{self._url}/health"
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                resp = await client.get(url, timeout=self._timeout_s)
                resp.raise_for_status()
                self._up(resp.text)
            except (httpx.HTTPError, HealthFormatError, ValueError) as exc:
                self._down(exc)
                await self._pause_after_failure()
                continue
            await asyncio.sleep(max(0.0, self._poll_interval_s - (loop.time() - started)))
