"""Change signalling: consumers see the newest state and never a backlog."""

from __future__ import annotations

import asyncio

from sidecar.latest import Latest
from sidecar.node_state import parse_health
from tests.sidecar.fake_node import health


async def test_wait_newer_wakes_on_change_and_times_out_without():
    latest = Latest("n1")
    assert not latest.settled.is_set()
    waiter = asyncio.create_task(latest.wait_newer(0, None))
    assert latest.update(parse_health(health(in_flight=1), 1))
    assert await asyncio.wait_for(waiter, 5) is True
    assert latest.settled.is_set()
    assert not latest.update(parse_health(health(in_flight=1), 2)), "same load: no change"
    assert latest.state.observed_unix_nanos == 2, "but the read time moves on"
    assert await latest.wait_newer(latest.version, 0.01) is False


async def test_many_changes_coalesce_for_a_slow_reader():
    latest = Latest()
    for n in range(10):
        latest.update(parse_health(health(in_flight=n % 3, queue_depth=n), n + 1))
    assert latest.version == 10
    assert await latest.wait_newer(0, 0) is True
    assert latest.state.models[0].queue_depth == 9
