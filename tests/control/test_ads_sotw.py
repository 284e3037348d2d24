"""State-of-the-world ADS over real gRPC: fetch, ACK, NACK, ordering, reconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google.rpc import status_pb2

from tests.control.xds_client import AdsClient, AdsServer, names_of, resources, until, weights_of
from xds_control import resource_types as rt


@pytest.fixture
async def server() -> AsyncIterator[AdsServer]:
    srv = AdsServer()
    srv.cache.set_resources(resources({"alpha": {1: 5}, "beta": {2: 3}}, {"r": "alpha"}))
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def client(server: AdsServer) -> AsyncIterator[AdsClient]:
    c = AdsClient(server.target)
    yield c
    await c.close()


async def test_initial_fetch_wildcard_and_named(server: AdsServer, client: AdsClient) -> None:
    client.sotw(rt.CLUSTER)
    cds = await client.recv()
    assert cds.type_url == rt.CLUSTER and cds.nonce and cds.version_info
    assert sorted(names_of(cds)) == ["alpha", "beta"]
    client.ack(cds)
    client.sotw(rt.ENDPOINT, resource_names=["beta"])
    eds = await client.recv()
    assert names_of(eds) == ["beta"]
    assert weights_of(eds, "beta") == [3]
    assert server.metric("fleet_control_xds_pushes_total", type="cds") == 1
    assert server.metric("fleet_control_connected_envoys", api="sotw") == 1
    [record] = server.cache.streams()
    assert record.node_id == "test-envoy" and record.acked == {rt.CLUSTER: cds.version_info}


async def test_empty_endpoint_request_means_none_not_all(client: AdsClient) -> None:
    client.sotw(rt.ENDPOINT)
    eds = await client.recv()
    assert eds.type_url == rt.ENDPOINT and names_of(eds) == []
    client.sotw(rt.CLUSTER, resource_names=["*"])
    assert sorted(names_of(await client.recv())) == ["alpha", "beta"]


async def test_version_moves_only_on_change(server: AdsServer, client: AdsClient) -> None:
    client.sotw(rt.ENDPOINT, resource_names=["alpha", "beta"])
    first = await client.recv()
    client.ack(first, ["alpha", "beta"])
    # Same content again: nothing changes, nobody is woken.
    assert server.cache.set_resources(resources({"alpha": {1: 5}, "beta": {2: 3}})) == {rt.ROUTE}
    # A weight change: one EDS push with a new version, and no CDS push.
    server.cache.set_resources(resources({"alpha": {1: 9}, "beta": {2: 3}}))
    second = await client.recv()
    assert second.type_url == rt.ENDPOINT
    assert second.version_info != first.version_info
    assert weights_of(second, "alpha") == [9]


async def test_nack_is_counted_and_not_resent(server: AdsServer, client: AdsClient) -> None:
    client.sotw(rt.CLUSTER)
    good = await client.recv()
    client.ack(good)
    server.cache.set_resources(resources({"alpha": {1: 5}, "beta": {2: 3}, "gamma": {3: 1}}))
    bad = await client.recv()
    client.sotw(
        rt.CLUSTER,
        version_info=good.version_info,
        response_nonce=bad.nonce,
        error_detail=status_pb2.Status(code=3, message="gamma: bogus"),
    )
    # A fresh subscription on another type is answered next: had the server re-sent the
    # NACKed CDS version, it would have come first on this ordered stream.
    client.sotw(rt.ROUTE, resource_names=["r"])
    nxt = await client.recv()
    assert nxt.type_url == rt.ROUTE
    assert server.metric("fleet_control_xds_nacks_total", type="cds") == 1
    [record] = server.cache.streams()
    assert record.acked[rt.CLUSTER] == good.version_info
    assert record.nacked[rt.CLUSTER] == (bad.version_info, "gamma: bogus")
    # The next real change goes out with a newer version.
    server.cache.set_resources(resources({"alpha": {1: 5}, "beta": {2: 3}}))
    fixed = await client.recv()
    assert fixed.type_url == rt.CLUSTER and fixed.version_info not in (bad.version_info, "")
    assert sorted(names_of(fixed)) == ["alpha", "beta"]


async def test_stale_nonce_is_ignored(server: AdsServer, client: AdsClient) -> None:
    client.sotw(rt.CLUSTER)
    first = await client.recv()
    client.sotw(rt.CLUSTER, version_info="", response_nonce="no-such-nonce")
    client.ack(first)
    server.cache.set_resources(resources({"alpha": {1: 5}}))
    nxt = await client.recv()
    assert nxt.type_url == rt.CLUSTER and names_of(nxt) == ["alpha"]
    assert server.cache.streams()[0].acked[rt.CLUSTER] == first.version_info


async def test_cluster_change_resends_its_endpoints_in_order(
    server: AdsServer, client: AdsClient
) -> None:
    client.sotw(rt.CLUSTER)
    cds = await client.recv()
    client.ack(cds)
    client.sotw(rt.ENDPOINT, resource_names=["alpha", "beta"])
    eds = await client.recv()
    client.ack(eds, ["alpha", "beta"])
    changed = resources({"alpha": {1: 5}, "beta": {2: 3}}, {"r": "alpha"})
    changed[rt.CLUSTER]["alpha"].connect_timeout.seconds = 7
    assert server.cache.set_resources(changed) == {rt.CLUSTER}
    again_cds = await client.recv()
    again_eds = await client.recv()
    assert again_cds.type_url == rt.CLUSTER
    assert again_eds.type_url == rt.ENDPOINT and again_eds.nonce != eds.nonce
    assert sorted(names_of(again_eds)) == ["alpha", "beta"]


async def test_route_waits_for_a_new_cluster_to_be_acked(
    server: AdsServer, client: AdsClient
) -> None:
    client.sotw(rt.CLUSTER)
    cds = await client.recv()
    client.ack(cds)
    client.sotw(rt.ROUTE, resource_names=["r"])
    rds = await client.recv()
    client.ack(rds, ["r"])
    server.cache.set_resources(
        resources({"alpha": {1: 5}, "beta": {2: 3}, "gamma": {3: 1}}, {"r": "gamma"})
    )
    new_cds = await client.recv()
    assert new_cds.type_url == rt.CLUSTER and "gamma" in names_of(new_cds)
    # Envoy asks for the new cluster's endpoints before ACKing CDS: those are answered,
    # but the route that points at gamma must wait (else it would have come first).
    client.sotw(rt.ENDPOINT, resource_names=["alpha", "beta", "gamma"])
    eds = await client.recv()
    assert eds.type_url == rt.ENDPOINT and "gamma" in names_of(eds)
    client.ack(eds, ["alpha", "beta", "gamma"])
    client.ack(new_cds)
    new_rds = await client.recv()
    assert new_rds.type_url == rt.ROUTE


async def test_reconnect_is_answered_and_ledger_forgets_old_stream(server: AdsServer) -> None:
    first = AdsClient(server.target)
    first.sotw(rt.CLUSTER)
    cds = await first.recv()
    first.ack(cds)
    await first.close()
    second = AdsClient(server.target)
    # Envoy reconnecting: its last accepted version and no nonce. It must be answered.
    second.sotw(rt.CLUSTER, version_info=cds.version_info)
    again = await second.recv()
    assert again.version_info == cds.version_info
    assert sorted(names_of(again)) == ["alpha", "beta"]
    second.ack(again)
    await second.close()
    await until(lambda: server.cache.streams() == [], 5, "closed streams to be forgotten")
