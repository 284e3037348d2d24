"""The weight policy table (docs/config.md): least busy -> heaviest, full -> DEGRADED."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from xds_control.fleet_state import ModelLoad, ModelState
from xds_control.weights import (
    Health,
    WeightPolicy,
    endpoint_health,
    endpoint_weight,
    fastest_decode_tps,
    speed_factor,
    speed_weight,
)

POLICY = WeightPolicy()  # max_weight 100, queued_weight 10, degraded when queue full


def load(in_flight: int = 0, queue: int = 0, slots: int = 4, depth: int = 8) -> ModelLoad:
    return ModelLoad(
        "m", in_flight=in_flight, queue_depth=queue, max_in_flight=slots, max_queue_depth=depth
    )


@pytest.mark.parametrize(
    ("model_load", "weight", "health"),
    [
        (load(0, 0), 100, Health.HEALTHY),
        (load(1, 0), 61, Health.HEALTHY),
        (load(2, 0), 32, Health.HEALTHY),
        (load(3, 0), 16, Health.HEALTHY),
        (load(4, 0), 10, Health.HEALTHY),
        (load(4, 1), 9, Health.HEALTHY),
        (load(4, 4), 5, Health.HEALTHY),
        (load(4, 7), 2, Health.HEALTHY),
        (load(4, 8), 1, Health.DEGRADED),
        (load(4, 9), 1, Health.DEGRADED),  # over-reported queue is still just full
        (load(4, 0, depth=0), 1, Health.DEGRADED),  # no queue: busy slots = full
        (load(0, 0, slots=0), 1, Health.DEGRADED),  # no capacity at all
        (None, 100, Health.HEALTHY),  # static node: nothing known, routed as idle
    ],
)
def test_policy_table(model_load: ModelLoad | None, weight: int, health: Health) -> None:
    assert endpoint_weight(model_load, POLICY) == weight
    assert endpoint_health(model_load, POLICY) is health


@pytest.mark.parametrize("state", [ModelState.LOADING, ModelState.FAILED])
def test_model_not_loaded_is_unhealthy(state: ModelState) -> None:
    model_load = ModelLoad("m", state=state, max_in_flight=4)
    assert endpoint_health(model_load, POLICY) is Health.UNHEALTHY
    assert endpoint_weight(model_load, POLICY) == 1


@pytest.mark.parametrize(("up", "stale"), [(False, False), (True, True), (False, True)])
def test_down_or_stale_node_is_never_idle(up: bool, stale: bool) -> None:
    assert endpoint_health(load(0, 0), POLICY, up=up, stale=stale) is Health.UNHEALTHY
    assert endpoint_health(None, POLICY, up=up, stale=stale) is Health.UNHEALTHY


def test_weight_never_increases_with_load_and_stays_in_range() -> None:
    for policy in (POLICY, WeightPolicy(max_weight=1), WeightPolicy(max_weight=7)):
        steps = [load(i, 0) for i in range(4)] + [load(4, q) for q in range(10)]
        weights = [endpoint_weight(s, policy) for s in steps]
        assert weights == sorted(weights, reverse=True)
        assert all(1 <= w <= policy.max_weight for w in weights)


def test_busy_exponent_sets_how_fast_busy_slots_cost_weight() -> None:
    half = load(2, 0)
    assert endpoint_weight(half, WeightPolicy(busy_exponent=1.0)) == 55  # linear
    assert endpoint_weight(half, WeightPolicy(busy_exponent=2.0)) == 32  # quarter, roughly
    # the ends of the slot band do not move
    for exponent in (0.5, 1.0, 3.0):
        policy = WeightPolicy(busy_exponent=exponent)
        assert endpoint_weight(load(0, 0), policy) == 100
        assert endpoint_weight(load(4, 0), policy) == 10


def test_degraded_queue_fill_degrades_earlier() -> None:
    policy = WeightPolicy(degraded_queue_fill=0.5)
    assert endpoint_health(load(4, 3), policy) is Health.HEALTHY
    assert endpoint_health(load(4, 4), policy) is Health.DEGRADED
    assert endpoint_weight(load(4, 4), policy) == 1


def test_queued_weight_bounds() -> None:
    assert WeightPolicy(max_weight=5).queued == 1
    assert WeightPolicy(max_weight=50, queued_weight=50).queued == 50
    with pytest.raises(ValidationError, match="must not exceed max_weight"):
        WeightPolicy(max_weight=10, queued_weight=11)


def fast(tps: float) -> ModelLoad:
    return ModelLoad("m", max_in_flight=4, max_queue_depth=8, decode_tps=tps)


@pytest.mark.parametrize(
    ("tps", "weight"),
    [
        (100.0, 100),  # the fastest keeps its load weight
        (92.0, 100),  # within the tolerance: measurement noise, not a slower node
        (89.0, 89),
        (50.0, 50),
        (25.0, 25),
        (0.5, 1),  # factor clamped to 1 / max_weight
        (0.0, 100),  # unknown speed is not slow
        (float("nan"), 100),
    ],
)
def test_speed_table(tps: float, weight: int) -> None:
    """The speed table in the weights module docstring and docs/config.md."""
    idle = endpoint_weight(fast(tps), POLICY)
    assert speed_weight(idle, speed_factor(fast(tps), 100.0, POLICY)) == weight


def test_speed_factor_edges() -> None:
    assert fastest_decode_tps([fast(25), None, fast(0), fast(100), fast(float("inf"))]) == 100
    assert fastest_decode_tps([None, fast(0)]) == 0.0
    assert fastest_decode_tps([]) == 0.0
    assert speed_factor(None, 100.0, POLICY) == 1.0  # static node
    assert speed_factor(fast(50), 0.0, POLICY) == 1.0  # nothing known to compare with
    assert speed_factor(fast(200), 100.0, POLICY) == 1.0  # never above 1
    assert speed_factor(fast(25), 100.0, WeightPolicy(speed_aware=False)) == 1.0
    assert speed_factor(fast(1), 100.0, WeightPolicy(max_weight=10)) == 0.1
    assert speed_factor(fast(99), 100.0, WeightPolicy(speed_tolerance=0.0)) == 0.99


def test_speed_never_drops_a_weight_below_one() -> None:
    for policy in (POLICY, WeightPolicy(max_weight=1), WeightPolicy(max_weight=7)):
        for in_flight in range(5):
            for queue in range(9):
                base = endpoint_weight(load(in_flight, queue), policy)
                for tps in (0.001, 1.0, 33.3, 100.0):
                    weight = speed_weight(base, speed_factor(fast(tps), 100.0, policy))
                    assert 1 <= weight <= base
