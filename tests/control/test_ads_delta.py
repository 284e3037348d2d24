"""Incremental (Delta) ADS over real gRPC: only changes go out, removals, NACK, reconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.rpc import status_pb2

from tests.control.xds_client import AdsClient, AdsServer, names_of, resources, weights_of
from xds_control import resource_types as rt

FLEET = {"alpha": {1: 5}, "beta": {2: 3}}


@pytest.fixture
async def server() -> AsyncIterator[AdsServer]:
    srv = AdsServer()
    srv.cache.set_resources(resources(FLEET))
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def client(server: AdsServer) -> AsyncIterator[AdsClient]:
    c = AdsClient(server.target, delta=True)
    yield c
    await c.close()


def ack(client: AdsClient, resp: Any) -> None:
    client.delta(resp.type_url, response_nonce=resp.nonce)


async def subscribed_eds(client: AdsClient, names: list[str]) -> Any:
    client.delta(rt.ENDPOINT, resource_names_subscribe=names)
    resp = await client.recv()
    ack(client, resp)
    return resp


async def test_wildcard_then_named_subscription(server: AdsServer, client: AdsClient) -> None:
    client.delta(rt.CLUSTER)
    cds = await client.recv()
    assert sorted(names_of(cds)) == ["alpha", "beta"]
    assert all(r.version for r in cds.resources) and not cds.removed_resources
    ack(client, cds)
    eds = await subscribed_eds(client, ["alpha"])
    assert names_of(eds) == ["alpha"]
    assert server.metric("fleet_control_connected_envoys", api="delta") == 1


async def test_only_the_changed_resource_is_sent(server: AdsServer, client: AdsClient) -> None:
    first = await subscribed_eds(client, ["alpha", "beta"])
    assert sorted(names_of(first)) == ["alpha", "beta"]
    server.cache.set_resources(resources({"alpha": {1: 5}, "beta": {2: 8}}))
    second = await client.recv()
    assert names_of(second) == ["beta"] and weights_of(second, "beta") == [8]


async def test_removal_and_missing_subscription(server: AdsServer, client: AdsClient) -> None:
    client.delta(rt.CLUSTER)
    ack(client, await client.recv())
    await subscribed_eds(client, ["alpha", "beta"])
    server.cache.set_resources(resources({"alpha": {1: 5}}))
    cds = await client.recv()
    assert list(cds.removed_resources) == ["beta"] and not cds.resources
    ack(client, cds)
    eds = await client.recv()
    assert eds.type_url == rt.ENDPOINT and list(eds.removed_resources) == ["beta"]
    ack(client, eds)
    client.delta(rt.ENDPOINT, resource_names_subscribe=["nope"])
    missing = await client.recv()
    assert list(missing.removed_resources) == ["nope"] and not missing.resources


async def test_unsubscribed_resource_is_not_pushed(server: AdsServer, client: AdsClient) -> None:
    await subscribed_eds(client, ["alpha", "beta"])
    client.delta(rt.ENDPOINT, resource_names_unsubscribe=["beta"])
    client.delta(rt.ROUTE, resource_names_subscribe=["x"])  # answered after the unsubscribe
    assert (await client.recv()).type_url == rt.ROUTE
    server.cache.set_resources(resources({"alpha": {1: 5}, "beta": {2: 9}}))
    server.cache.set_resources(resources({"alpha": {1: 6}, "beta": {2: 9}}))
    nxt = await client.recv()
    assert names_of(nxt) == ["alpha"] and weights_of(nxt, "alpha") == [6]


async def test_nack_is_not_resent(server: AdsServer, client: AdsClient) -> None:
    await subscribed_eds(client, ["alpha", "beta"])
    server.cache.set_resources(resources({"alpha": {1: 7}, "beta": {2: 3}}))
    bad = await client.recv()
    client.delta(
        rt.ENDPOINT,
        response_nonce=bad.nonce,
        error_detail=status_pb2.Status(code=3, message="weight rejected"),
    )
    client.delta(rt.ROUTE, resource_names_subscribe=["x"])  # answered next, unless the
    nxt = await client.recv()  # NACKed alpha were re-sent first
    assert nxt.type_url == rt.ROUTE
    assert server.metric("fleet_control_xds_nacks_total", type="eds") == 1
    server.cache.set_resources(resources({"alpha": {1: 4}, "beta": {2: 3}}))
    fixed = await client.recv()
    assert fixed.type_url == rt.ENDPOINT and weights_of(fixed, "alpha") == [4]


async def test_reconnect_with_initial_versions_sends_only_what_differs(
    server: AdsServer,
) -> None:
    first = AdsClient(server.target, delta=True)
    eds = await subscribed_eds(first, ["alpha", "beta"])
    versions = {r.name: r.version for r in eds.resources}
    await first.close()
    server.cache.set_resources(resources({"alpha": {1: 5}, "beta": {2: 1}}))
    second = AdsClient(server.target, delta=True)
    second.delta(
        rt.ENDPOINT, resource_names_subscribe=["alpha", "beta"], initial_resource_versions=versions
    )
    resp = await second.recv()
    assert names_of(resp) == ["beta"] and weights_of(resp, "beta") == [1]
    await second.close()


async def test_cluster_resend_brings_its_endpoints(server: AdsServer, client: AdsClient) -> None:
    client.delta(rt.CLUSTER)
    ack(client, await client.recv())
    await subscribed_eds(client, ["alpha", "beta"])
    changed = resources(FLEET)
    changed[rt.CLUSTER]["alpha"].connect_timeout.seconds = 9
    assert server.cache.set_resources(changed) == {rt.CLUSTER}
    cds = await client.recv()
    eds = await client.recv()
    assert names_of(cds) == ["alpha"]
    assert eds.type_url == rt.ENDPOINT and names_of(eds) == ["alpha"]
