"""Per-model admission control: a bounded pool of run slots plus a bounded, timed queue.

Pure asyncio, no HTTP. Requests beyond ``max_in_flight + max_queue_depth`` are refused at
once; a queued request that cannot start within ``max_wait_s`` is refused too. Slots are
handed straight to the oldest waiter on release (FIFO, no thundering herd). All state
lives on one event loop, so the counters are plain ints that /health reads without locks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from node.retry_after import DecodeSpeedEstimator, ServiceTimeEstimator


@dataclass(frozen=True)
class AdmissionLimits:
    max_in_flight: int = 1
    max_queue_depth: int = 8
    max_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if self.max_queue_depth < 0:
            raise ValueError("max_queue_depth must be >= 0")
        if not self.max_wait_s > 0:
            raise ValueError("max_wait_s must be > 0")


class AdmissionRejected(Exception):
    """Refused: ``reason`` is ``queue_full`` or ``timeout``; ``retry_after`` in seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(f"admission rejected ({reason}), retry after {retry_after}s")
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Permit:
    """One run slot; give it back exactly once via :meth:`AdmissionController.release`."""

    started: float
    released: bool = False


@dataclass
class AdmissionController:
    limits: AdmissionLimits = field(default_factory=AdmissionLimits)
    estimator: ServiceTimeEstimator = field(default_factory=ServiceTimeEstimator)
    # Fed by the HTTP layer with each finished generation's tokens and time.
    decode_speed: DecodeSpeedEstimator = field(default_factory=DecodeSpeedEstimator)
    on_change: Callable[[], None] | None = None
    clock: Callable[[], float] = time.monotonic

    in_flight: int = 0
    admitted_total: int = 0
    rejected_queue_full_total: int = 0
    rejected_timeout_total: int = 0
    completed_total: int = 0
    _waiters: deque[asyncio.Future[None]] = field(default_factory=deque)

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    @property
    def rejected_total(self) -> int:
        return self.rejected_queue_full_total + self.rejected_timeout_total

    def retry_after(self) -> int:
        return self.estimator.retry_after(self.queue_depth, self.limits.max_in_flight)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _grant(self) -> Permit:
        self.admitted_total += 1
        self._changed()
        return Permit(started=self.clock())

    async def acquire(self) -> Permit:
        """A slot now, a slot after a wait, or :class:`AdmissionRejected`."""
        if self.in_flight < self.limits.max_in_flight and not self._waiters:
            self.in_flight += 1
            return self._grant()
        if len(self._waiters) >= self.limits.max_queue_depth:
            self.rejected_queue_full_total += 1
            retry = self.retry_after()
            self._changed()
            raise AdmissionRejected("queue_full", retry)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._changed()
        timer = loop.call_later(self.limits.max_wait_s, self._expire, waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # The slot was handed over just as the caller went away: pass it on.
                self._free_slot()
            else:
                self._drop_waiter(waiter)
            raise
        finally:
            timer.cancel()
        return self._grant()

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        self._drop_waiter(waiter)
        self.rejected_timeout_total += 1
        waiter.set_exception(AdmissionRejected("timeout", self.retry_after()))
        self._changed()

    def _drop_waiter(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return
        self._changed()

    def _free_slot(self) -> None:
        """Hand the slot to the oldest live waiter, or return it to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # in_flight unchanged: the slot moves over
                self._changed()
                return
        self.in_flight -= 1
        self._changed()

    def release(self, permit: Permit, outcome: str = "ok") -> None:
        """Give the slot back once. ``ok`` and ``error`` runs feed the service-time
        estimate; ``cancelled`` ones (client gone) say nothing about it."""
        if permit.released:
            return
        permit.released = True
        if outcome == "ok":
            self.completed_total += 1
        if outcome != "cancelled":
            self.estimator.observe(self.clock() - permit.started)
        self._free_slot()

    @asynccontextmanager
    async def permit(self) -> AsyncIterator[Permit]:
        """Hold a slot for a block; cancellation releases it without skewing the estimate."""
        permit = await self.acquire()
        try:
            yield permit
        except asyncio.CancelledError:
            self.release(permit, "cancelled")
            raise
        except BaseException:
            self.release(permit, "error")
            raise
        else:
            self.release(permit, "ok")
