"""Pushing load reports to the control plane over the LoadReporting gRPC stream.

The sidecar dials in, announces the node on the stream's first message and then sends the
full state on every change at once, or a heartbeat when nothing changed for the interval
the control plane asked for. Reports are rendered from the latest state when they are
sent, so a slow control plane sees fewer, newer reports and never stalls the node reader
or /metrics. A lost stream is redialled with capped, jittered backoff and re-announced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from fleet.proto import load_pb2, load_pb2_grpc
from sidecar.backoff import Backoff
from sidecar.latest import Latest
from sidecar.report import Identity, build_report
from sidecar.stats import Stats

log = logging.getLogger("sidecar.control")

DEFAULT_HEARTBEAT_S = 1.0
MIN_HEARTBEAT_S = 0.05  # whatever the control plane asks, never spin
# A control plane that stops reading stalls our writes once HTTP/2 flow control fills up;
# past this the stream is dropped and redialled (the latest state is sent on the new one).
WRITE_TIMEOUT_S = 5.0
# A fresh channel per attempt makes our backoff the only one; grpc's own would otherwise
# hold a dead target in TRANSIENT_FAILURE for up to 120 s and fail every dial at once.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.enable_retries", 0),
]


class Reporter:
    def __init__(
        self,
        target: str,
        latest: Latest,
        identity: Callable[[], Identity | None],
        stats: Stats,
        backoff: Backoff | None = None,
    ) -> None:
        self._target = target
        self._latest = latest
        self._identity = identity
        self._stats = stats
        self._backoff = backoff or Backoff()
        self._sequence = 0
        self.heartbeat_s = DEFAULT_HEARTBEAT_S
        self.connected = False
        self._answered = False  # on the current stream

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def run(self) -> None:
        """Report forever (until cancelled), reconnecting after every loss."""
        attempt = 0
        while True:
            identity = await self._wait_identity()
            self._answered = False
            try:
                await self._session(identity)
                reason = "stream closed by the control plane"
            except grpc.aio.AioRpcError as exc:
                reason = f"{exc.code().name}: {exc.details()}"
            except TimeoutError:
                reason = f"a write took over {WRITE_TIMEOUT_S} s (control plane stalled)"
            except asyncio.InvalidStateError:
                # grpc.aio's "RPC already finished": a write raced the control plane's close.
                reason = "stream closed by the control plane"
            except Exception as exc:  # never let one bad stream end reporting for good
                log.exception(
                    "load-report stream failed", extra={"fields": {"control": self._target}}
                )
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self.connected = False
                self._stats.connected.set(0)
            answered = self._answered
            if answered:
                attempt = 0
            delay = self._backoff.delay(attempt)
            attempt += 1
            log_at = log.warning if answered or attempt == 1 else log.debug
            log_at(
                "control plane stream lost; redialling",
                extra={"fields": {"control": self._target, "why": reason, "in_s": round(delay, 3)}},
            )
            await asyncio.sleep(delay)

    async def _wait_identity(self) -> Identity:
        """Announce only after the first read; without --name the node must have answered."""
        await self._latest.settled.wait()
        while (identity := self._identity()) is None:
            await self._latest.wait_newer(self._latest.version, None)
        return identity

    async def _session(self, identity: Identity) -> None:
        """One stream, until it fails or the control plane ends it."""
        async with grpc.aio.insecure_channel(self._target, options=_CHANNEL_OPTIONS) as channel:
            call = load_pb2_grpc.LoadReportingStub(channel).StreamLoad()
            reader = asyncio.create_task(self._read(call))
            writer = asyncio.create_task(self._write(call, identity))
            try:
                done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # raises the stream's error, if any
            finally:
                reader.cancel()
                writer.cancel()
                # gather, not `suppress(CancelledError)`: that would also swallow a cancel
                # aimed at us (shutdown) and keep the reporter alive forever.
                await asyncio.gather(reader, writer, return_exceptions=True)
                call.cancel()

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        async for response in call:
            assert isinstance(response, load_pb2.LoadReportResponse)
            if not self._answered:
                self._answered = True
                self.connected = True
                self._stats.connected.set(1)
                self._stats.connects.inc()
                log.info(
                    "connected to the control plane", extra={"fields": {"control": self._target}}
                )
            if response.heartbeat_interval_ms:
                self.heartbeat_s = max(MIN_HEARTBEAT_S, response.heartbeat_interval_ms / 1000.0)

    async def _write(self, call: grpc.aio.StreamStreamCall, identity: Identity) -> None:
        version = self._latest.version
        await self._send(
            call,
            build_report(
                self._latest.state,
                sequence=self._next_sequence(),
                heartbeat=False,
                identity=identity,
            ),
        )
        self._stats.reports.labels("announce").inc()
        while True:
            changed = await self._latest.wait_newer(version, self.heartbeat_s)
            version = self._latest.version
            if self._identity() != identity:
                log.info(
                    "node identity changed; re-announcing", extra={"fields": {"was": identity}}
                )
                return  # a new stream announces the new identity
            await self._send(
                call,
                build_report(
                    self._latest.state, sequence=self._next_sequence(), heartbeat=not changed
                ),
            )
            self._stats.reports.labels("change" if changed else "heartbeat").inc()

    @staticmethod
    async def _send(call: grpc.aio.StreamStreamCall, report: load_pb2.LoadReport) -> None:
        await asyncio.wait_for(call.write(report), WRITE_TIMEOUT_S)
