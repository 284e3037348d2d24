"""The seeded trace: reproducible, Poisson-rate arrivals, bounded heavy-tailed lengths."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.workload import OUTPUT, PROMPT, LengthDist, NodeSpec, capacity_rps, generate, load, save


def test_same_seed_same_trace_other_seed_differs() -> None:
    a = generate(seed=7, rate_rps=5, duration_s=60)
    assert a == generate(seed=7, rate_rps=5, duration_s=60)
    assert a != generate(seed=8, rate_rps=5, duration_s=60)


def test_arrivals_follow_the_rate_and_stay_inside_the_window() -> None:
    trace = generate(seed=1, rate_rps=20, duration_s=500)
    # 10,000 expected arrivals: Poisson sd is 100, so 5 % is > 5 sd away.
    assert 9_500 < len(trace) < 10_500
    times = [r.arrival_s for r in trace]
    assert times == sorted(times)
    assert times[0] >= 0 and times[-1] < 500
    assert [r.id for r in trace] == list(range(len(trace)))


def test_lengths_are_clipped_and_heavy_tailed() -> None:
    trace = generate(seed=2, rate_rps=50, duration_s=200)
    outs = sorted(r.output_tokens for r in trace)
    prompts = [r.prompt_tokens for r in trace]
    assert min(outs) >= OUTPUT.lo and max(outs) <= OUTPUT.hi
    assert min(prompts) >= PROMPT.lo and max(prompts) <= PROMPT.hi
    # Heavy tail: the longest 1 % of outputs are several times the median.
    assert outs[int(0.99 * len(outs))] > 4 * outs[len(outs) // 2]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    trace = generate(seed=4, rate_rps=3, duration_s=20)
    save(trace, tmp_path / "trace.jsonl")
    assert load(tmp_path / "trace.jsonl") == trace


def test_capacity_adds_up_node_throughput() -> None:
    fixed = LengthDist(median=100, sigma=0, lo=1, hi=1000)
    node = NodeSpec(
        "a", decode_tps=10, prefill_tps=100, max_in_flight=2, max_queue_depth=0, max_wait_s=1
    )
    # service = 100/100 + 100/10 = 11 s, two slots -> 2/11 rps per node.
    assert capacity_rps([node, node], fixed, fixed) == pytest.approx(4 / 11)


@pytest.mark.parametrize("kwargs", [{"rate_rps": 0}, {"duration_s": -1}])
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"seed": 0, "rate_rps": 1, "duration_s": 1, **kwargs}
    with pytest.raises(ValueError):
        generate(**args)  # type: ignore[arg-type]


def test_bad_length_distribution_is_refused() -> None:
    with pytest.raises(ValueError):
        LengthDist(median=10, sigma=1, lo=5, hi=2)
