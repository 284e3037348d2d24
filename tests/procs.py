"""Process harness for tests: start fleet processes, wait on conditions, stop cleanly.

No sleep-and-hope: every wait polls a condition until a deadline and fails with what it
was waiting for and the process logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to 0, read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Could a (re)started server listen on ``port`` now?

    Binds as servers do, with SO_REUSEADDR, so closed connections lingering in TIME_WAIT
    do not count while a live listener does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen()
        except OSError:
            return False
        return True


def wait_until(
    pred: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.02,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``pred`` until it returns a truthy value; raise AssertionError on timeout.

    Exceptions inside ``pred`` count as "not yet" (a server still starting refuses).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
                + (f"\n{extra}" if extra else "")
            )
        time.sleep(interval)


def http_json(
    url: str, body: Any = None, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """GET (or POST JSON when ``body`` is given); returns (status, headers, parsed body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status, hdrs = resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as err:
        raw = err.read()
        status, hdrs = err.code, {k.lower(): v for k, v in err.headers.items()}
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, hdrs, parsed


def fleet_argv(*args: str) -> list[str]:
    """argv that runs ``fleet ARGS`` with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "fleet.cli", *args]


class Proc:
    """A child process whose output goes to a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=full_env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """Ask politely, then kill; returns the exit code."""
        if self.alive():
            self.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return int(self.popen.returncode)


class ProcGroup:
    """Every process a test started; all stopped at teardown, logs shown on failure."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(argv, self.log_dir / f"{name}.{len(self.procs)}.log", env)
        self.procs.append(proc)
        return proc

    def fleet(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        return self.start(name, fleet_argv(*args), env)

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(f"--- {p.log_path.name} ---\n{p.log_text()[-tail:]}" for p in self.procs)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
