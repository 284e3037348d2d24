"""The node's per-model admission state, parsed from its ``/health`` JSON (pure, no I/O).

The sidecar's single source of truth: metrics and load reports are both rendered from the
latest :class:`NodeState`, so Prometheus and the control plane never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODEL_STATES = ("loading", "loaded", "failed")


class HealthFormatError(ValueError):
    """The node answered, but not with the /health shape the sidecar understands."""


@dataclass(frozen=True)
class ModelLoad:
    model: str
    state: str
    in_flight: int
    queue_depth: int
    max_in_flight: int
    max_queue_depth: int
    admitted_total: int
    rejected_total: int
    rejected_queue_full_total: int
    rejected_timeout_total: int
    completed_total: int
    # EWMA tokens/s of generation; None until the node has finished a request.
    decode_tps: float | None = None


@dataclass(frozen=True)
class NodeState:
    """What the sidecar last saw; ``up=False`` keeps the last-known models for context."""

    up: bool
    name: str | None
    models: tuple[ModelLoad, ...] = ()
    # When this state was read (unix ns); not part of equality, so a re-read is no change.
    observed_unix_nanos: int = field(default=0, compare=False)

    def down(self, observed_unix_nanos: int) -> NodeState:
        """The same node, unreachable: last-known models, no longer up."""
        return NodeState(False, self.name, self.models, observed_unix_nanos)


def _count(raw: Mapping[str, Any], key: str, model: str, *, default: int | None = None) -> int:
    value = raw.get(key, default)
    if value is None:
        raise HealthFormatError(f"model {model!r}: missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HealthFormatError(f"model {model!r}: {key!r} must be a count >= 0, got {value!r}")
    return value


def _speed(raw: Mapping[str, Any], model: str) -> float | None:
    value = raw.get("decode_tps")
    if value is None:  # absent (an older node) or not measured yet
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HealthFormatError(f"model {model!r}: 'decode_tps' must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise HealthFormatError(f"model {model!r}: 'decode_tps' must be >= 0, got {value!r}")
    return float(value)


def parse_model(raw: Any) -> ModelLoad:
    if not isinstance(raw, Mapping):
        raise HealthFormatError(f"a models[] entry must be an object, got {raw!r}")
    model = raw.get("id")
    if not isinstance(model, str) or not model:
        raise HealthFormatError(f"a models[] entry has no string 'id': {raw!r}")
    state = raw.get("state", "loaded")
    if state not in MODEL_STATES:
        raise HealthFormatError(f"model {model!r}: unknown state {state!r}")
    rejected = _count(raw, "rejected_total", model, default=0)
    return ModelLoad(
        model=model,
        state=state,
        in_flight=_count(raw, "in_flight", model),
        queue_depth=_count(raw, "queue_depth", model),
        max_in_flight=_count(raw, "max_in_flight", model),
        max_queue_depth=_count(raw, "max_queue_depth", model),
        admitted_total=_count(raw, "admitted_total", model, default=0),
        rejected_total=rejected,
        rejected_queue_full_total=_count(raw, "rejected_queue_full_total", model, default=0),
        rejected_timeout_total=_count(raw, "rejected_timeout_total", model, default=0),
        completed_total=_count(raw, "completed_total", model, default=0),
        decode_tps=_speed(raw, model),
    )


def parse_health(raw: Any, observed_unix_nanos: int) -> NodeState:
    """A node's /health body as a :class:`NodeState`; raises HealthFormatError on bad input."""
    if not isinstance(raw, Mapping):
        raise HealthFormatError(f"/health must be a JSON object, got {type(raw).__name__}")
    name = raw.get("node")
    if name is not None and not isinstance(name, str):
        raise HealthFormatError(f"'node' must be a string, got {name!r}")
    models = raw.get("models")
    if not isinstance(models, list):
        raise HealthFormatError("/health has no 'models' list")
    parsed = tuple(sorted((parse_model(m) for m in models), key=lambda m: m.model))
    return NodeState(True, name or None, parsed, observed_unix_nanos)
