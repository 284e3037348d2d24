"""What the control plane knows about the fleet: nodes, their models and load.

Pure data, no I/O: the load-report servicer and the static nodes of the config produce
it, :mod:`xds_control.snapshot` consumes it. Values are immutable so a snapshot build
always sees one consistent view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ModelState(StrEnum):
    """A model's lifecycle on one node (mirrors the node's /health ``state``)."""

    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelLoad:
    """One model's admission state on one node, as last reported."""

    model: str
    state: ModelState = ModelState.LOADED
    in_flight: int = 0
    queue_depth: int = 0
    max_in_flight: int = 1
    max_queue_depth: int = 8
    admitted_total: int = 0
    rejected_total: int = 0
    # EWMA of generation tokens/s on this node; 0.0 = unknown (nothing finished yet).
    decode_tps: float = 0.0


@dataclass(frozen=True)
class NodeState:
    """One node as the control plane sees it.

    ``last_report`` is a monotonic timestamp (seconds) of the last report or heartbeat;
    ``None`` for static nodes from the config, which never go stale (no sidecar reports
    on them, so nothing is known of their load and they are routed as unloaded).
    """

    name: str
    address: str
    port: int
    models: dict[str, ModelLoad] = field(default_factory=dict)
    up: bool = True
    last_report: float | None = None
    static: bool = False

    def is_stale(self, now: float, stale_after_s: float) -> bool:
        """True when a reporting node has been silent too long (never for static nodes)."""
        return self.last_report is not None and now - self.last_report > stale_after_s


@dataclass(frozen=True)
class FleetState:
    """Every known node by name, plus the monotonic time the view was taken."""

    nodes: dict[str, NodeState] = field(default_factory=dict)
    now: float = 0.0
