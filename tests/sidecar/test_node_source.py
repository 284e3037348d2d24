"""How the sidecar reads nodes that lack /health/stream, or whose stream goes silent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.procs import ProcGroup, wait_until
from tests.sidecar.conftest import start_sidecar
from tests.sidecar.fake_node import FakeNode, StreamMode, health
from tests.sidecar.stub_control import StubControl

T = 20


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeNode]:
    mode: StreamMode = request.param
    node = FakeNode(mode).start()
    yield node
    node.stop()


@pytest.mark.parametrize("fake", ["missing"], indirect=True)
def test_without_stream_endpoint_it_polls_health(
    procs: ProcGroup, stub: StubControl, fake: FakeNode
):
    sidecar = start_sidecar(procs, fake.url, stub.port, "--name", "old-node")
    first = wait_until(lambda: stub.first_of_stream(1), T, "the announce", on_timeout=procs.logs)
    assert first.node.name == "old-node" and first.node_up
    fake.body = health(in_flight=2, queue_depth=3)
    changed = wait_until(
        lambda: next((r for r in stub.reports() if r.models[0].queue_depth == 3), None),
        T,
        "a polled change pushed",
        on_timeout=procs.logs,
    )
    assert not changed.heartbeat and changed.models[0].in_flight == 2
    wait_until(
        lambda: sidecar.sample("vllm:num_requests_waiting", model_name="alpha") == 3, T, "metrics"
    )
    assert fake.stream_requests == 1, "a 404 stream is not retried"
    assert "polling /health" in sidecar.proc.log_text()


@pytest.mark.parametrize("fake", ["silent"], indirect=True)
def test_a_silent_stream_is_treated_as_broken(procs: ProcGroup, stub: StubControl, fake: FakeNode):
    sidecar = start_sidecar(procs, fake.url, stub.port)
    first = wait_until(lambda: stub.first_of_stream(1), T, "the announce", on_timeout=procs.logs)
    assert first.node.name == "fake" and first.node_up
    down = wait_until(
        lambda: next((r for r in stub.reports() if not r.node_up), None),
        T,
        "the silent node reported down",
        on_timeout=procs.logs,
    )
    assert [m.model for m in down.models] == ["alpha"]
    wait_until(lambda: fake.stream_requests >= 2, T, "the stream reopened")
    assert sidecar.proc.stop() == 0, "a stop mid-stream is still clean"
    assert "sidecar stopped" in sidecar.proc.log_text()


@pytest.mark.parametrize("fake", ["missing"], indirect=True)
def test_a_renamed_node_is_announced_again(procs: ProcGroup, stub: StubControl, fake: FakeNode):
    start_sidecar(procs, fake.url, stub.port)  # no --name: the node's own name is used
    first = wait_until(lambda: stub.first_of_stream(1), T, "the announce", on_timeout=procs.logs)
    assert first.node.name == "fake"
    fake.body = health(name="renamed")
    again = wait_until(lambda: stub.first_of_stream(2), T, "a new stream", on_timeout=procs.logs)
    assert again.node.name == "renamed" and again.node_up


@pytest.mark.parametrize("fake", ["silent"], indirect=True)
def test_stops_cleanly_with_node_and_control_plane_gone(
    procs: ProcGroup, stub: StubControl, fake: FakeNode
):
    # Regression: a shutdown landing while a lost stream was being torn down used to be
    # swallowed, leaving the sidecar redialling until SIGKILL.
    sidecar = start_sidecar(procs, fake.url, stub.port)
    wait_until(lambda: stub.first_of_stream(1), T, "the announce", on_timeout=procs.logs)
    wait_until(lambda: any(not r.node_up for r in stub.reports()), T, "the node down")
    fake.stop()
    stub.stop()
    assert sidecar.proc.stop(timeout=10) == 0, sidecar.proc.log_text()
    assert "sidecar stopped" in sidecar.proc.log_text()
