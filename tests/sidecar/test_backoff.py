from __future__ import annotations

import random

import pytest

from sidecar.backoff import Backoff


def test_delays_grow_jittered_and_stay_capped():
    rng = random.Random(4)
    b = Backoff(0.1, 5.0)
    first = [b.delay(0, rng) for _ in range(50)]
    assert all(d == pytest.approx(0.1) for d in first)
    late = [b.delay(30, rng) for _ in range(200)]
    assert all(0.1 <= d <= 5.0 for d in late)
    assert len({round(d, 3) for d in late}) > 100, "jittered, not lockstep"
    assert max(b.delay(3, rng) for _ in range(200)) <= 0.8


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="base_s"):
        Backoff(5.0, 0.1)
