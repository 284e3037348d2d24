"""Helpers for node tests: start a `fleet node`, read SSE, hold a raw streaming socket."""

from __future__ import annotations

import json
import socket
from typing import Any

from tests.procs import Proc, ProcGroup, free_port, http_json, wait_until


def start_node(
    group: ProcGroup,
    *args: str,
    name: str = "n1",
    ready_model: str | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> tuple[Proc, str]:
    """Start a node on a free port; wait until /health answers (and a model is loaded)."""
    port = free_port()
    proc = group.fleet(
        name, "node", "--name", name, "--listen", f"127.0.0.1:{port}", *args, env=env
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"node exited early:\n{proc.log_text()}")
        status, _, body = http_json(f"{base}/health", timeout=2)
        if status != 200:
            return False
        if ready_model is None:
            return True
        return any(m["id"] == ready_model and m["state"] != "loading" for m in body["models"])

    wait_until(ready, timeout, f"node {name} ready", interval=0.05, on_timeout=proc.log_text)
    return proc, base


def model_health(base: str, model: str) -> dict[str, Any]:
    _, _, body = http_json(f"{base}/health")
    return next(m for m in body["models"] if m["id"] == model)


def chat_body(model: str, max_tokens: int = 5, stream: bool = False, **extra: Any) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": max_tokens,
        "stream": stream,
        **extra,
    }


class RawStream:
    """A POST over a bare socket, so a test can read part of a stream and hang up."""

    def __init__(self, base: str, path: str, body: dict, timeout: float = 10.0) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        data = json.dumps(body).encode()
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        self.buffer = b""

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed before {marker!r}: {self.buffer[-500:]!r}")
            self.buffer += chunk
        return self.buffer

    def read_all(self) -> bytes:
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return self.buffer
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()
