"""Envoy outlives its control plane: it serves on with the last config, and resyncs after.

Each test stops the control plane and leaves a running one behind, so they are independent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.e2e.harness import FULL, PieceFleet
from tests.procs import ProcGroup, http_json, wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(180)]


class Traffic:
    """Requests through Envoy in a loop on a thread; each failure is kept with its phase."""

    def __init__(self, fleet: PieceFleet) -> None:
        self.fleet = fleet
        self.count = 0
        self.phase = "control up"
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            resp = self.fleet.chat("m")
            self.count += 1
            if resp.status_code != 200:
                self.failures.append(f"{self.phase}: {resp.status_code} {resp.text[:160]}")

    def wait_more(self, n: int, what: str) -> None:
        start = self.count
        wait_until(lambda: self.count >= start + n, 30, f"{n} requests {what}")

    def __enter__(self) -> Traffic:
        self.thread.start()
        self.wait_more(5, "before the test")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture(scope="module")
def fleet(module_procs: ProcGroup) -> Iterator[PieceFleet]:
    f = PieceFleet(module_procs, module_procs.log_dir, {"node-1": ["m=sim"], "node-2": ["m=sim"]})
    yield f
    f.close()


def restart_control(fleet: PieceFleet) -> None:
    fleet.control = fleet.start_control()

    def both_reported() -> bool:
        _, _, snap = http_json(f"http://127.0.0.1:{fleet.http_port}/snapshot")
        nodes = snap.get("nodes", {})
        return all(nodes.get(n, {}).get("up") for n in ("node-1", "node-2"))

    wait_until(both_reported, 30, "sidecars to report to the new control plane")


def test_envoy_keeps_serving_while_the_control_plane_is_down(fleet):
    try:
        with Traffic(fleet) as traffic:
            assert fleet.control.stop() == 0
            traffic.phase = "control down"
            traffic.wait_more(20, "while the control plane is down")
        assert traffic.failures == []
    finally:
        restart_control(fleet)


def test_a_restarted_control_plane_resyncs_without_disruption(fleet):
    with Traffic(fleet) as traffic:
        assert fleet.control.stop() == 0
        traffic.phase = "control down"
        traffic.wait_more(5, "while the control plane is down")
        traffic.phase = "control restarting"
        restart_control(fleet)
        traffic.phase = "sidecars re-registered"
        traffic.wait_more(10, "after the resync")
    assert traffic.failures == []


def test_the_restarted_control_plane_drives_envoy_again(fleet):
    assert fleet.control.stop() == 0
    restart_control(fleet)
    # Load on node-1 reaches Envoy through the new control plane: traffic moves to node-2.
    with fleet.hold("node-1", "m", FULL):
        fleet.wait_envoy(
            "m",
            lambda h: h["node-1"]["health"].get("eds_health_status") == "DEGRADED",
            "the restarted control plane's push",
        )
        assert set(fleet.served_by("m", 6)) == {"node-2"}
