"""Child processes of ``fleet up``: start them, notice deaths, restart with backoff, stop in order.

Synchronous on purpose: the launcher's loop polls a handful of processes a few times a
second, and plain ``subprocess`` keeps signal handling and shutdown easy to reason about.
Each child's stdout and stderr go to its own log file (appended across restarts).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from fleet.plan import Child, Kind

# Envoy first (stop taking traffic), then the sidecars, the nodes, the control plane.
STOP_ORDER: tuple[Kind, ...] = ("envoy", "sidecar", "node", "control")


@dataclass(frozen=True)
class Backoff:
    """Restart delays: ``base * 2**(n-1)`` capped, reset once a child has run ``stable_s``."""

    base_s: float = 1.0
    cap_s: float = 30.0
    stable_s: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap_s, self.base_s * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class Exit:
    """A child that ended on its own (not stopped by us)."""

    child: Child
    returncode: int
    ran_s: float

    def describe(self) -> str:
        code = self.returncode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"{self.child.name} died ({how}) after {self.ran_s:.1f} s; log: {self.child.log}"


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGTERM if the launcher itself is killed (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Running:
    def __init__(self, child: Child, popen: subprocess.Popen[bytes], log: IO[bytes], t0: float):
        self.child, self.popen, self.log, self.started = child, popen, log, t0


class Supervisor:
    """Owns the fleet's processes; every method is called from the launcher's main thread."""

    def __init__(
        self,
        children: Sequence[Child],
        *,
        env: dict[str, str] | None = None,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = list(children)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.backoff = backoff
        self.clock = clock
        self.running: dict[str, _Running] = {}
        self.failures: dict[str, int] = {}
        self.restart_at: dict[str, float] = {}

    def start(self, child: Child) -> None:
        child.log.parent.mkdir(parents=True, exist_ok=True)
        log = open(child.log, "ab")  # noqa: SIM115 - closed when the child is reaped
        log.write(f"--- fleet up: starting {' '.join(child.argv)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            child.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            # Own process group: a terminal's Ctrl-C reaches only the launcher, which then
            # stops the children in order instead of all at once.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.running[child.name] = _Running(child, popen, log, self.clock())

    def start_all(self) -> None:
        for child in self.children:
            self.start(child)

    def pids(self) -> dict[str, int]:
        return {name: r.popen.pid for name, r in self.running.items()}

    def poll(self) -> list[Exit]:
        """Reap children that ended since the last call, and start restarts that are due."""
        now = self.clock()
        exits: list[Exit] = []
        for name, r in list(self.running.items()):
            code = r.popen.poll()
            if code is None:
                continue
            r.log.close()
            del self.running[name]
            ran = now - r.started
            if ran >= self.backoff.stable_s:
                self.failures[name] = 0
            exits.append(Exit(r.child, code, ran))
        for name, due in list(self.restart_at.items()):
            if now >= due:
                del self.restart_at[name]
                self.start(next(c for c in self.children if c.name == name))
        return exits

    def restart_later(self, child: Child) -> float:
        """Schedule a restart after the backoff delay; returns the delay in seconds."""
        self.failures[child.name] = self.failures.get(child.name, 0) + 1
        delay = self.backoff.delay(self.failures[child.name])
        self.restart_at[child.name] = self.clock() + delay
        return delay

    def stop_all(self, timeout_s: float = 10.0, force: Callable[[], bool] = lambda: False) -> None:
        """Stop every child group by group in STOP_ORDER: SIGTERM, wait, then SIGKILL."""
        self.restart_at.clear()
        for kind in STOP_ORDER:
            group = [r for r in self.running.values() if r.child.kind == kind]
            for r in group:
                _signal(r.popen, signal.SIGTERM)
            deadline = self.clock() + timeout_s
            for r in group:
                while r.popen.poll() is None and self.clock() < deadline and not force():
                    time.sleep(0.02)
                if r.popen.poll() is None:
                    _signal(r.popen, signal.SIGKILL, group=True)
                    r.popen.wait()
                r.log.close()
                del self.running[r.child.name]


def _signal(popen: subprocess.Popen[bytes], sig: int, *, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(popen.pid, sig)
        else:
            popen.send_signal(sig)
