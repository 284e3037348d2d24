"""The weight policy: one model's load on one node -> its EDS weight and health.

Envoy balances with these numbers, so they decide where the next request goes. Free
execution slots matter most (a request there starts at once), and each busy slot costs
more than its share because concurrent generations slow each other down, hence the
exponent; once every slot is busy a node can only queue, so it drops to a low band
ranked by how much queue room is left:

    S = max_in_flight, Q = max_queue_depth, W = max_weight, B = queued_weight,
    E = busy_exponent, free = (S - in_flight) / S
    slots free, nothing queued:  weight = B + round((W - B) * free ** E)
    every slot busy or queuing:  weight = 1 + round((B - 1) * (Q - queue_depth) / Q)

==============================================  ==========  ==========================
node / model situation                          health      weight
==============================================  ==========  ==========================
idle (0 in flight, 0 queued)                    HEALTHY     W (``max_weight``)
some slots busy, none queued                    HEALTHY     B+1 .. W-1, fewer busy -> heavier
every slot busy, queue empty                    HEALTHY     B (``queued_weight``)
queuing, queue below ``degraded_queue_fill``    HEALTHY     2 .. B-1, shorter queue -> heavier
queue fill >= ``degraded_queue_fill`` (full)    DEGRADED    1 (no traffic while others have room)
every slot busy and no queue configured         DEGRADED    1
no capacity (``max_in_flight`` 0)               DEGRADED    1
static node (configured, no load reports)       HEALTHY     W (nothing known: idle)
model loading or failed                         UNHEALTHY   1
node down (sidecar cannot reach it)             UNHEALTHY   1
node stale (no report within ``stale_after_s``) UNHEALTHY   1 (silence is never "idle")
==============================================  ==========  ==========================

Speed (``speed_aware``, on by default): load alone scores free slots, so an idle node
decoding at a quarter of the speed would look as good as an idle fast one and its
requests would become the tail. Each reported ``decode_tps`` (EWMA of generation
tokens/s; 0 = unknown) is therefore compared with the fastest known speed among the
model's routable (healthy or degraded) replicas, and the load weight is scaled by it:

    ratio  = decode_tps / fastest_tps
    factor = 1 if ratio >= 1 - speed_tolerance (default 0.1) or either speed is unknown,
             else clamp(ratio, 1 / W, 1)
    weight = max(1, round(load_weight * factor))

==============================================  ==========================================
replica's speed (fastest = 100 tok/s, W = 100)  weight of an idle replica (load weight W)
==============================================  ==========================================
100 tok/s (the fastest)                         100 (factor 1)
92 tok/s (within the 10% tolerance)             100 (factor 1: measurement noise)
50 tok/s                                        50
25 tok/s                                        25
0.5 tok/s                                       1 (factor clamped to 1/W)
unknown (no request finished yet, static node)  100 (factor 1: unknown is not slow)
any, ``speed_aware: false``                     100 (load-only, the table above)
==============================================  ==========================================

Weights are always >= 1: Envoy NACKs a ``load_balancing_weight`` of 0. ``max_weight`` is
also the granularity: a small value means fewer distinct weights, hence fewer EDS pushes
under fluctuating load. Equal weights are tie-broken by the snapshot builder, which orders
endpoints by node name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xds_control.fleet_state import ModelLoad, ModelState


class Health(StrEnum):
    """The subset of Envoy's HealthStatus the policy uses."""

    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"


class WeightPolicy(BaseModel):
    """The policy's knobs (the config file's ``weights:`` section)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    max_weight: int = Field(default=100, ge=1, le=10_000)
    # Weight of a node whose slots are all busy but whose queue is empty; None = W // 10.
    queued_weight: int | None = Field(default=None, ge=1, le=10_000)
    degraded_queue_fill: float = Field(default=1.0, gt=0.0, le=1.0)
    # 1 = weight falls linearly with busy slots; 2 = half the slots busy -> a quarter.
    busy_exponent: float = Field(default=2.0, ge=0.5, le=4.0)
    # Scale each weight by the replica's decode speed relative to the model's fastest.
    speed_aware: bool = True
    # Replicas within this fraction of the fastest count as equally fast: measured speeds
    # jitter by a few percent, and that noise must not split equal replicas' weights.
    speed_tolerance: float = Field(default=0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _bands(self) -> WeightPolicy:
        if self.queued_weight is not None and self.queued_weight > self.max_weight:
            raise ValueError(
                f"queued_weight ({self.queued_weight}) must not exceed"
                f" max_weight ({self.max_weight})"
            )
        return self

    @property
    def queued(self) -> int:
        """B in the table: the top of the queuing band."""
        if self.queued_weight is not None:
            return self.queued_weight
        return max(1, self.max_weight // 10)


def _slots_free(load: ModelLoad) -> bool:
    return load.queue_depth <= 0 and load.in_flight < load.max_in_flight


def is_full(load: ModelLoad, policy: WeightPolicy) -> bool:
    """True when the node would refuse (or nearly) the next request for this model."""
    if load.max_in_flight <= 0:
        return True
    if _slots_free(load):
        return False
    if load.max_queue_depth <= 0:
        return True
    return load.queue_depth / load.max_queue_depth >= policy.degraded_queue_fill


def endpoint_weight(load: ModelLoad | None, policy: WeightPolicy) -> int:
    """EDS ``load_balancing_weight`` in 1..max_weight; ``None`` (no reports) is idle."""
    if load is None:
        return policy.max_weight
    if load.state is not ModelState.LOADED or is_full(load, policy):
        return 1
    top, band = policy.max_weight, policy.queued
    if _slots_free(load):
        free = (load.max_in_flight - max(0, load.in_flight)) / load.max_in_flight
        weight = band + round((top - band) * free**policy.busy_exponent)
    else:
        room = (load.max_queue_depth - load.queue_depth) / load.max_queue_depth
        weight = 1 + round((band - 1) * room)
    return max(1, min(top, weight))


def endpoint_health(
    load: ModelLoad | None,
    policy: WeightPolicy,
    *,
    up: bool = True,
    stale: bool = False,
) -> Health:
    """EDS ``health_status`` for one (node, model); see the module table."""
    if not up or stale:
        return Health.UNHEALTHY
    if load is None:
        return Health.HEALTHY
    if load.state is not ModelState.LOADED:
        return Health.UNHEALTHY
    return Health.DEGRADED if is_full(load, policy) else Health.HEALTHY


def _known_tps(load: ModelLoad | None) -> float:
    """The reported decode speed, or 0.0 when unknown (no load, 0, NaN, inf, negative)."""
    if load is None:
        return 0.0
    tps = load.decode_tps
    return tps if math.isfinite(tps) and tps > 0 else 0.0


def fastest_decode_tps(loads: Iterable[ModelLoad | None]) -> float:
    """The highest known decode speed among these loads (one model's routable replicas);
    0.0 when none is known."""
    return max((_known_tps(load) for load in loads), default=0.0)


def speed_factor(load: ModelLoad | None, fastest_tps: float, policy: WeightPolicy) -> float:
    """This replica's share of the fastest speed, clamped to [1/max_weight, 1]; exactly 1
    when ``speed_aware`` is off, either speed is unknown, or the replica is within
    ``speed_tolerance`` of the fastest (see the module's speed table)."""
    tps = _known_tps(load)
    if not policy.speed_aware or tps <= 0 or not (math.isfinite(fastest_tps) and fastest_tps > 0):
        return 1.0
    ratio = tps / fastest_tps
    if ratio >= 1.0 - policy.speed_tolerance:
        return 1.0
    return max(1 / policy.max_weight, ratio)


def speed_weight(weight: int, factor: float) -> int:
    """A load weight scaled by a :func:`speed_factor`; still an int >= 1."""
    return max(1, round(weight * factor))
