"""The admission controller on its own: capacity, queueing, timeouts, release, estimates."""

from __future__ import annotations

import asyncio

import pytest

from node.admission import AdmissionController, AdmissionLimits, AdmissionRejected
from node.retry_after import DecodeSpeedEstimator, ServiceTimeEstimator, clamp_retry_after


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def controller(in_flight: int = 1, queue: int = 2, wait: float = 30.0, **kw) -> AdmissionController:
    return AdmissionController(limits=AdmissionLimits(in_flight, queue, wait), **kw)


async def test_admits_up_to_capacity_then_queues_then_refuses():
    adm = controller(in_flight=2, queue=1)
    p1, p2 = await adm.acquire(), await adm.acquire()
    queued = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    assert (adm.in_flight, adm.queue_depth) == (2, 1)
    with pytest.raises(AdmissionRejected) as rej:
        await adm.acquire()
    assert rej.value.reason == "queue_full"
    assert 1 <= rej.value.retry_after <= 120
    assert adm.rejected_queue_full_total == 1 and adm.rejected_total == 1

    adm.release(p1)
    p3 = await asyncio.wait_for(queued, 1)
    assert (adm.in_flight, adm.queue_depth) == (2, 0)
    adm.release(p2)
    adm.release(p3)
    assert adm.in_flight == 0
    assert adm.admitted_total == 3 and adm.completed_total == 3


async def test_queue_is_fifo():
    adm = controller(in_flight=1, queue=3)
    first = await adm.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        permit = await adm.acquire()
        order.append(i)
        adm.release(permit)

    waiters = [asyncio.ensure_future(wait(i)) for i in range(3)]
    await asyncio.sleep(0)
    adm.release(first)
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert order == [0, 1, 2]


async def test_queued_request_times_out():
    adm = controller(in_flight=1, queue=2, wait=0.05)
    held = await adm.acquire()
    with pytest.raises(AdmissionRejected) as rej:
        await adm.acquire()
    assert rej.value.reason == "timeout"
    assert adm.rejected_timeout_total == 1 and adm.queue_depth == 0
    adm.release(held)
    assert adm.in_flight == 0


async def test_cancelled_waiter_leaves_queue_and_slot_is_not_lost():
    adm = controller(in_flight=1, queue=2)
    held = await adm.acquire()
    waiter = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    assert adm.queue_depth == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert adm.queue_depth == 0
    adm.release(held)
    assert adm.in_flight == 0
    again = await asyncio.wait_for(adm.acquire(), 1)
    adm.release(again)


async def test_slot_handed_to_a_waiter_that_is_cancelled_at_once_is_passed_on():
    adm = controller(in_flight=1, queue=2)
    held = await adm.acquire()
    doomed = asyncio.ensure_future(adm.acquire())
    await asyncio.sleep(0)
    adm.release(held)  # hands the slot to `doomed`...
    doomed.cancel()  # ...which goes away before it runs
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert adm.in_flight == 0 and adm.queue_depth == 0


async def test_permit_context_releases_on_error_and_cancellation():
    clock = FakeClock()
    adm = controller(in_flight=1, queue=0, clock=clock)
    with pytest.raises(RuntimeError):
        async with adm.permit():
            clock.now += 4
            raise RuntimeError("boom")
    assert adm.in_flight == 0 and adm.completed_total == 0
    assert adm.estimator.samples == 1  # a failed run still took time

    started = asyncio.Event()

    async def hold() -> None:
        async with adm.permit():
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(hold())
    await started.wait()
    assert adm.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert adm.in_flight == 0
    assert adm.estimator.samples == 1  # a cancelled run says nothing about speed


async def test_release_twice_is_harmless():
    adm = controller()
    permit = await adm.acquire()
    adm.release(permit)
    adm.release(permit)
    assert adm.in_flight == 0 and adm.completed_total == 1


async def test_every_state_change_is_signalled():
    calls: list[int] = []
    adm = controller(in_flight=1, queue=0, on_change=lambda: calls.append(1))
    permit = await adm.acquire()
    with pytest.raises(AdmissionRejected):
        await adm.acquire()
    adm.release(permit)
    assert len(calls) == 3  # admitted, refused, released


async def test_retry_after_follows_measured_service_time_and_queue():
    clock = FakeClock()
    adm = controller(in_flight=1, queue=4, clock=clock, estimator=ServiceTimeEstimator(prior_s=2))
    assert adm.retry_after() == 2  # prior, nothing measured yet
    for _ in range(3):
        permit = await adm.acquire()
        clock.now += 10
        adm.release(permit)
    assert adm.estimator.service_s == pytest.approx(10)
    held = await adm.acquire()
    queued = [asyncio.ensure_future(adm.acquire()) for _ in range(4)]
    await asyncio.sleep(0)
    with pytest.raises(AdmissionRejected) as rej:
        await adm.acquire()
    assert rej.value.retry_after == 50  # 4 queued ahead + itself, 10 s each, 1 at a time
    for task in queued:
        task.cancel()
    await asyncio.gather(*queued, return_exceptions=True)
    adm.release(held)


def test_retry_after_scales_with_parallelism_and_is_clamped():
    est = ServiceTimeEstimator(prior_s=1.0)
    est.observe(8.0)
    assert est.retry_after(queue_ahead=3, max_in_flight=4) == 8
    assert est.retry_after(queue_ahead=1000, max_in_flight=1) == 120
    est2 = ServiceTimeEstimator()
    est2.observe(0.001)
    assert est2.retry_after(queue_ahead=0, max_in_flight=8) == 1
    assert clamp_retry_after(float("nan")) == 120


def test_ewma_weights_recent_samples():
    est = ServiceTimeEstimator(alpha=0.5)
    est.observe(10)
    est.observe(2)
    assert est.service_s == pytest.approx(6)
    est.observe(float("inf"))  # ignored
    assert est.service_s == pytest.approx(6)


def test_limits_reject_nonsense():
    with pytest.raises(ValueError):
        AdmissionLimits(max_in_flight=0)
    with pytest.raises(ValueError):
        AdmissionLimits(max_queue_depth=-1)
    with pytest.raises(ValueError):
        AdmissionLimits(max_wait_s=0)


def test_decode_speed_is_an_ewma_of_tokens_per_generation_second():
    est = DecodeSpeedEstimator(alpha=0.5)
    assert est.tps is None, "unknown until a request finishes"
    for tokens, seconds in ((0, 1.0), (5, 0.0), (5, -1.0), (5, float("nan")), (5, float("inf"))):
        est.observe(tokens, seconds)  # no tokens or no usable time: no sample
    assert est.tps is None and est.samples == 0
    est.observe(50, 2.0)
    assert est.tps == 25.0, "the first sample is the estimate"
    est.observe(10, 0.1)
    assert est.tps == 0.5 * 100 + 0.5 * 25
    assert est.samples == 2
    assert AdmissionController().decode_speed.tps is None
