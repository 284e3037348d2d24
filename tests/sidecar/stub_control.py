"""An in-process LoadReporting server standing in for the control plane (sync grpc, so
tests can wait on it with the blocking ``wait_until``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc

from fleet.proto import load_pb2, load_pb2_grpc


@dataclass(frozen=True)
class Received:
    stream: int
    at_ns: int  # time.time_ns() on arrival
    report: load_pb2.LoadReport


class _Servicer(load_pb2_grpc.LoadReportingServicer):
    def __init__(self, stub: StubControl) -> None:
        self.stub = stub

    def StreamLoad(self, request_iterator, context) -> Iterator[load_pb2.LoadReportResponse]:
        stream = self.stub._open_stream()
        yield load_pb2.LoadReportResponse(
            heartbeat_interval_ms=self.stub.heartbeat_ms, stale_after_ms=5 * self.stub.heartbeat_ms
        )
        for report in request_iterator:
            self.stub._record(Received(stream, time.time_ns(), report))


class StubControl:
    def __init__(self, port: int = 0, heartbeat_ms: int = 200) -> None:
        self.heartbeat_ms = heartbeat_ms
        self.requested_port = port
        self.port = port
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._streams = 0
        self._server: grpc.Server | None = None

    def start(self) -> StubControl:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        load_pb2_grpc.add_LoadReportingServicer_to_server(_Servicer(self), server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0).wait(5)
            self._server = None

    def _open_stream(self) -> int:
        with self._lock:
            self._streams += 1
            return self._streams

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    @property
    def streams(self) -> int:
        with self._lock:
            return self._streams

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def reports(self) -> list[load_pb2.LoadReport]:
        return [r.report for r in self.received()]

    def first_of_stream(self, stream: int) -> load_pb2.LoadReport | None:
        return next((r.report for r in self.received() if r.stream == stream), None)
