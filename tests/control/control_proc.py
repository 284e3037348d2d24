"""Start ``fleet control`` as a process and talk to it (ready line, HTTP, load reports)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import grpc

from fleet.proto import load_pb2, load_pb2_grpc
from tests.procs import Proc, ProcGroup, free_port, http_json, wait_until


class Control:
    """A running control plane: its process, ports and a few readers."""

    def __init__(self, procs: ProcGroup, config: Path, *extra: str) -> None:
        self.xds_port, self.http_port = free_port(), free_port()
        self.proc: Proc = procs.fleet(
            "control",
            "control",
            "--config",
            str(config),
            "--xds",
            f"127.0.0.1:{self.xds_port}",
            "--http",
            f"127.0.0.1:{self.http_port}",
            *extra,
        )
        self.procs = procs
        wait_until(
            lambda: (
                re.search(r"msg=ready xds=\S+ http=\S+", self.proc.log_text())
                or not self.proc.alive()
            ),
            30,
            "the control plane's ready line",
            on_timeout=procs.logs,
        )
        assert self.proc.alive(), self.proc.log_text()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def snapshot(self) -> dict[str, Any]:
        status, _, body = http_json(self.url("/snapshot"))
        assert status == 200
        return body

    def metric(self, name: str, **labels: str) -> float:
        _, _, text = http_json(self.url("/metrics"))
        want = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        for line in str(text).splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0


class Reporter:
    """A test sidecar: one LoadReporting stream, synchronous sends."""

    def __init__(self, xds_port: int, name: str, address: str, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{xds_port}")
        self.identity = load_pb2.NodeIdentity(name=name, address=address, port=port)
        self.seq = 0
        self._pending: list[load_pb2.LoadReport] = []
        import queue

        self._queue: queue.Queue[load_pb2.LoadReport | None] = queue.Queue()

        def requests() -> Any:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                yield item

        self.call = load_pb2_grpc.LoadReportingStub(self.channel).StreamLoad(requests())
        self.settings = next(self.call)

    def send(self, loads: dict[str, int], *, up: bool = True, max_in_flight: int = 4) -> None:
        """Report per-model in-flight counts (queue empty)."""
        self.seq += 1
        self._queue.put(
            load_pb2.LoadReport(
                node=self.identity,
                node_up=up,
                sequence=self.seq,
                observed_unix_nanos=time.time_ns(),
                models=[
                    load_pb2.ModelLoad(
                        model=m,
                        state=load_pb2.MODEL_STATE_LOADED,
                        in_flight=n,
                        max_in_flight=max_in_flight,
                        max_queue_depth=8,
                    )
                    for m, n in sorted(loads.items())
                ],
            )
        )

    def next_settings(self, within: float = 10.0) -> load_pb2.LoadReportResponse:
        """The next settings message the control plane sends (bounded wait)."""
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(next, self.call).result(within)

    def close(self) -> None:
        self._queue.put(None)
        self.call.cancel()
        self.channel.close()
