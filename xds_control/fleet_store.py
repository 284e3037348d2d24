"""The one mutable holder of fleet state, with a staleness timer per reporting node.

Reports replace a node's state wholesale (each report is the node's full state). Only a
change that can alter the snapshot calls ``on_change``: a heartbeat that repeats the same
load just refreshes ``last_report``. When a node falls silent, its timer fires after the
TTL so the next build sees it stale, even though no report arrived to trigger a rebuild;
if it stays silent much longer it is forgotten altogether.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from xds_control.fleet_state import FleetState, NodeState

# Fire a little after the TTL so the rebuild's ``now`` is past it.
_TIMER_SLACK_S = 0.01
# A node silent this long after going stale is forgotten (scaled-down nodes must not
# pile up as UNHEALTHY endpoints forever); it comes back with its next report.
FORGET_AFTER_TTLS = 10.0
FORGET_AFTER_MIN_S = 60.0


def _load_view(node: NodeState) -> NodeState:
    """The node without its timestamp: what a snapshot build could see change."""
    return dataclasses.replace(node, last_report=None)


class FleetStore:
    """Nodes by name; must be used from the event loop thread."""

    def __init__(
        self,
        stale_after_s: float,
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stale_after_s = stale_after_s
        self._on_change = on_change
        self._clock = clock
        self._nodes: dict[str, NodeState] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def update(self, node: NodeState) -> bool:
        """Record a node's latest state; returns whether a rebuild was requested."""
        old = self._nodes.get(node.name)
        now = self._clock()
        self._nodes[node.name] = node
        if node.last_report is not None:
            self._arm(node.name)
        changed = (
            old is None
            or _load_view(old) != _load_view(node)
            or old.is_stale(now, self.stale_after_s)
        )
        if changed:
            self._on_change()
        return changed

    def remove(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        if self._nodes.pop(name, None) is not None:
            self._on_change()

    def state(self) -> FleetState:
        return FleetState(nodes=dict(self._nodes), now=self._clock())

    def counts(self) -> dict[str, int]:
        """Nodes by status, for metrics."""
        now = self._clock()
        out = {"up": 0, "down": 0, "stale": 0}
        for node in self._nodes.values():
            if node.is_stale(now, self.stale_after_s):
                out["stale"] += 1
            elif node.up:
                out["up"] += 1
            else:
                out["down"] += 1
        return out

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _arm(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(
            self.stale_after_s + _TIMER_SLACK_S, self._expired, name
        )

    def _expired(self, name: str) -> None:
        """The node just went stale: rebuild now, and forget it if it stays silent."""
        self._timers.pop(name, None)
        if name in self._nodes:
            self._on_change()
            loop = asyncio.get_running_loop()
            self._timers[name] = loop.call_later(self.forget_after_s(), self.remove, name)

    def forget_after_s(self) -> float:
        """How long a stale node stays (UNHEALTHY) before it is dropped from the fleet."""
        return max(FORGET_AFTER_MIN_S, FORGET_AFTER_TTLS * self.stale_after_s)
