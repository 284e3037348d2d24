"""After a restart, an Envoy that reconnects with a prior config keeps it until sidecars resync.

Without the hold-off, a restarted control plane (empty fleet view) would answer the
reconnecting Envoy at once with endpoint-less clusters and every request would get 503
until the sidecars dialled back in.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.control.xds_client import AdsClient, AdsServer, names_of, resources, weights_of
from xds_control import resource_types as rt

HOLD_S = 1.5


async def test_fresh_envoy_is_answered_at_once_during_the_hold() -> None:
    server = AdsServer(resync_s=HOLD_S)
    server.cache.set_resources(resources({"alpha": {1: 5}}))
    await server.start()
    client = AdsClient(server.target)
    try:
        client.sotw(rt.CLUSTER)
        assert names_of(await client.recv(within=HOLD_S / 2)) == ["alpha"]
    finally:
        await client.close()
        await server.stop()


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_reconnecting_envoy_waits_and_then_gets_the_resynced_fleet(delta: bool) -> None:
    server = AdsServer(resync_s=HOLD_S)
    server.cache.set_resources(resources({"alpha": {}}))  # restarted: no node reported yet
    await server.start()
    client = AdsClient(server.target, delta=delta)
    try:
        if delta:
            client.delta(
                rt.ENDPOINT,
                resource_names_subscribe=["alpha"],
                initial_resource_versions={"alpha": "before-restart"},
            )
        else:
            client.sotw(rt.ENDPOINT, resource_names=["alpha"], version_info="before-restart")
        answer = asyncio.ensure_future(client.recv(within=HOLD_S + 5))
        done, _ = await asyncio.wait([answer], timeout=HOLD_S / 3)
        assert not done, "answered during the hold: Envoy would have lost its endpoints"
        server.cache.set_resources(resources({"alpha": {1: 7}}))  # a sidecar dialled back in
        resp = await answer
        assert weights_of(resp, "alpha") == [7]
    finally:
        await client.close()
        await server.stop()
