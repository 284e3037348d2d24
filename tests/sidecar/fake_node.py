"""A stand-in node whose /health the test sets directly, and whose /health/stream is
either missing (404, an older node) or silent after its first event (a hung node)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

StreamMode = Literal["missing", "silent"]


def health(
    in_flight: int = 0,
    queue_depth: int = 0,
    name: str = "fake",
    decode_tps: float | None = None,
) -> dict[str, Any]:
    return {
        "uptime_secs": 1.0,
        "node": name,
        "models": [
            {
                "id": "alpha",
                "state": "loaded",
                "in_flight": in_flight,
                "queue_depth": queue_depth,
                "max_in_flight": 2,
                "max_queue_depth": 4,
                "admitted_total": in_flight + queue_depth,
                "rejected_total": 0,
                "decode_tps": decode_tps,
            }
        ],
    }


class FakeNode:
    def __init__(self, stream: StreamMode) -> None:
        self.stream = stream
        self.body = health()
        self.stream_requests = 0
        self.closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(200, json.dumps(fake.body).encode())
                elif self.path == "/health/stream":
                    fake.stream_requests += 1
                    if fake.stream == "missing":
                        self._send(404, b'{"error": "not found"}')
                        return
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(f"data: {json.dumps(fake.body)}\n\n".encode())
                    self.wfile.flush()
                    fake.closing.wait(30)  # then silence: no keepalives
                else:
                    self._send(404, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeNode:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.closing.is_set():
            return
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
