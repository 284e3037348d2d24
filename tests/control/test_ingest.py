"""Load ingestion: reports -> NodeState, the LoadReporting stream, staleness timers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from fleet.proto import load_pb2, load_pb2_grpc
from tests.control.xds_client import until
from xds_control import fleet_store
from xds_control.fleet_state import ModelLoad, ModelState, NodeState
from xds_control.fleet_store import FleetStore
from xds_control.ingest import LoadIngestServicer, ReportError, check_identity, report_to_node
from xds_control.metrics import Metrics

IDENT = load_pb2.NodeIdentity(name="n1", address="127.0.0.1", port=8101)


def report(seq: int, in_flight: int = 0, **kw: Any) -> load_pb2.LoadReport:
    return load_pb2.LoadReport(
        node=IDENT if seq == 1 else None,
        node_up=kw.pop("node_up", True),
        sequence=seq,
        models=[
            load_pb2.ModelLoad(
                model="alpha",
                state=load_pb2.MODEL_STATE_LOADED,
                in_flight=in_flight,
                max_in_flight=4,
                max_queue_depth=8,
            )
        ],
        **kw,
    )


def test_report_becomes_node_state() -> None:
    node = report_to_node(report(1, in_flight=3, node_up=False), IDENT, now=12.5)
    assert node == NodeState(
        name="n1",
        address="127.0.0.1",
        port=8101,
        models={
            "alpha": ModelLoad(
                "alpha", ModelState.LOADED, in_flight=3, max_in_flight=4, max_queue_depth=8
            )
        },
        up=False,
        last_report=12.5,
    )


@pytest.mark.parametrize(
    ("ident", "message"),
    [
        (load_pb2.NodeIdentity(address="h", port=1), "must carry node.name"),
        (load_pb2.NodeIdentity(name="n", port=1), "node.address is empty"),
        (load_pb2.NodeIdentity(name="n", address="h", port=70000), "out of range"),
    ],
)
def test_bad_identity_is_refused_with_a_clear_message(
    ident: load_pb2.NodeIdentity, message: str
) -> None:
    with pytest.raises(ReportError, match=message):
        check_identity(ident)


class Ingest:
    def __init__(self) -> None:
        self.nodes: list[NodeState] = []
        self.metrics = Metrics()
        self.server = grpc.aio.server()
        load_pb2_grpc.add_LoadReportingServicer_to_server(
            LoadIngestServicer(
                self.nodes.append,
                lambda: load_pb2.LoadReportResponse(
                    heartbeat_interval_ms=1000, stale_after_ms=3000
                ),
                self.metrics,
            ),
            self.server,
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    srv = Ingest()
    await srv.server.start()
    yield srv
    await srv.server.stop(0)


async def test_stream_feeds_nodes_and_drops_out_of_order(ingest: Ingest) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
        call = load_pb2_grpc.LoadReportingStub(channel).StreamLoad()
        settings = await call.read()
        assert settings.stale_after_ms == 3000
        await call.write(report(1, in_flight=1))
        await call.write(report(3, in_flight=3))
        await call.write(report(2, in_flight=2))  # older than 3: dropped
        await call.write(report(4, in_flight=4, heartbeat=True))
        await until(lambda: len(ingest.nodes) == 3, 5, "three accepted reports")
        assert [n.models["alpha"].in_flight for n in ingest.nodes] == [1, 3, 4]
        assert ingest.sample("fleet_control_load_reports_total", kind="out_of_order") == 1
        assert ingest.sample("fleet_control_load_reports_total", kind="heartbeat") == 1
        assert ingest.sample("fleet_control_connected_sidecars") == 1
        await call.done_writing()
    await until(lambda: ingest.sample("fleet_control_connected_sidecars") == 0, 5, "sidecar gone")


async def test_stream_without_identity_is_refused(ingest: Ingest) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
        call = load_pb2_grpc.LoadReportingStub(channel).StreamLoad()
        await call.read()
        await call.write(load_pb2.LoadReport(node_up=True))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "node.name" in (err.value.details() or "")
    assert ingest.nodes == []


async def test_store_rebuilds_on_change_not_on_heartbeat_and_on_silence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fleet_store, "FORGET_AFTER_MIN_S", 0.0)
    monkeypatch.setattr(fleet_store, "FORGET_AFTER_TTLS", 1.0)
    # The store reads staleness from a clock we move by hand; its timers run in real time.
    now = [100.0]
    rebuilds: list[int] = []
    store = FleetStore(
        stale_after_s=0.2, on_change=lambda: rebuilds.append(1), clock=lambda: now[0]
    )
    assert store.update(report_to_node(report(1, in_flight=1), IDENT, now=now[0]))
    assert len(rebuilds) == 1
    # A heartbeat with the same load changes nothing a snapshot could show.
    assert not store.update(report_to_node(report(2, in_flight=1), IDENT, now=now[0]))
    assert store.update(report_to_node(report(3, in_flight=2), IDENT, now=now[0]))
    assert len(rebuilds) == 2
    # Then silence: the staleness timer asks for a rebuild that sees the node stale.
    await until(lambda: len(rebuilds) == 3, 5, "the staleness timer")
    now[0] += 0.3
    state = store.state()
    assert state.nodes["n1"].is_stale(state.now, 0.2)
    assert store.counts() == {"up": 0, "down": 0, "stale": 1}
    # Still silent a while later: forgotten, which is a change too.
    await until(lambda: "n1" not in store.state().nodes, 5, "the stale node to be forgotten")
    assert len(rebuilds) == 4
    # Its sidecar coming back is a normal reconnect.
    assert store.update(report_to_node(report(1, in_flight=0), IDENT, now=now[0]))
    assert len(rebuilds) == 5 and store.counts()["up"] == 1
    store.close()


async def test_a_burst_of_reports_costs_one_or_two_builds() -> None:
    from types import SimpleNamespace

    from xds_control.cache import SnapshotCache
    from xds_control.control import ControlPlane

    seen: list[int] = []

    def builder(_config: Any, state: Any) -> Any:
        load = state.nodes["n1"].models["alpha"].in_flight if state.nodes else -1
        seen.append(load)
        return SimpleNamespace(resources={})

    from xds_control.config import parse_config

    config = parse_config("models: [{id: alpha}]\nstale_after_s: 30\n")
    plane = ControlPlane(
        config,
        "unused.yaml",
        SnapshotCache(),
        Metrics(),
        coalesce_s=0.05,
        builder=builder,
    )
    loop = asyncio.get_running_loop()
    for i in range(100):
        plane.on_node(report_to_node(report(i + 1, in_flight=i), IDENT, now=loop.time()))
    await until(lambda: seen and seen[-1] == 99, 5, "a build that saw the last report")
    assert len(seen) <= 2
    # A later isolated change is built too (the window only merges, never drops).
    plane.on_node(report_to_node(report(200, in_flight=7), IDENT, now=loop.time()))
    await until(lambda: seen[-1] == 7, 5, "the isolated change")
    plane.close()
