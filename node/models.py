"""Which models a node serves (``--model ID[=SOURCE]``) and each one's live state."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.admission import AdmissionController, AdmissionLimits
from node.backends.base import Backend
from node.embedded import EMBEDDED_ID
from node.retry_after import ServiceTimeEstimator

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


@dataclass(frozen=True)
class ModelSpec:
    """``id`` and ``source``: ``sim``, ``embedded`` or a path (HF directory or .gguf file)."""

    id: str
    source: str

    @property
    def backend_kind(self) -> str:
        return "sim" if self.source == "sim" else "transformers"


def parse_model_spec(text: str) -> ModelSpec:
    """``ID=SOURCE``, ``embedded``, ``sim``, a bare path (id from its name) or a bare ID.

    A bare ID serves the embedded model under that id (SOURCE defaults to ``embedded``).
    """
    text = text.strip()
    if not text:
        raise ValueError("--model needs a value: ID[=SOURCE]")
    if "=" in text:
        model_id, _, source = text.partition("=")
        model_id, source = model_id.strip(), source.strip()
        if not source:
            raise ValueError(f"--model {text!r}: SOURCE after '=' is empty")
    elif text == "embedded":
        model_id, source = EMBEDDED_ID, "embedded"
    elif text == "sim":
        model_id, source = "sim", "sim"
    elif "/" in text or text.endswith(".gguf"):
        model_id, source = Path(text).stem if text.endswith(".gguf") else Path(text).name, text
    else:
        model_id, source = text, "embedded"
    if not _ID_RE.match(model_id):
        raise ValueError(f"--model {text!r}: invalid model id {model_id!r}")
    if source not in ("sim", "embedded"):
        path = Path(source).expanduser()
        if not path.exists():
            raise ValueError(f"--model {text!r}: {path} does not exist")
        source = str(path)
    return ModelSpec(model_id, source)


@dataclass
class ServedModel:
    """A model's backend, admission controller and load state (loading|loaded|failed)."""

    spec: ModelSpec
    backend: Backend
    admission: AdmissionController
    state: str = "loading"
    error: str | None = None
    _on_change: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    async def load(self) -> None:
        try:
            await self.backend.load()
        except Exception as exc:
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error(
                "model failed to load", extra={"fields": {"model": self.id, "error": self.error}}
            )
        else:
            self.state = "loaded"
            log.info("model loaded", extra={"fields": {"model": self.id}})
        if self._on_change is not None:
            self._on_change()

    def health(self) -> dict[str, Any]:
        a = self.admission
        return {
            "id": self.id,
            "state": self.state,
            "backend": self.backend.kind,
            "in_flight": a.in_flight,
            "queue_depth": a.queue_depth,
            "max_in_flight": a.limits.max_in_flight,
            "max_queue_depth": a.limits.max_queue_depth,
            "max_wait_s": a.limits.max_wait_s,
            "admitted_total": a.admitted_total,
            "rejected_total": a.rejected_total,
            "rejected_queue_full_total": a.rejected_queue_full_total,
            "rejected_timeout_total": a.rejected_timeout_total,
            "completed_total": a.completed_total,
            "decode_tps": None if a.decode_speed.tps is None else round(a.decode_speed.tps, 3),
            "error": self.error,
        }


@dataclass(frozen=True)
class NodeSettings:
    limits: AdmissionLimits
    sim_decode_tps: float = 50.0
    sim_prefill_tps: float = 2000.0
    device: str = "auto"


def build_model(
    spec: ModelSpec, settings: NodeSettings, on_change: Callable[[], None]
) -> ServedModel:
    backend: Backend
    if spec.source == "sim":
        from node.backends.sim import SimBackend

        backend = SimBackend(spec.id, settings.sim_decode_tps, settings.sim_prefill_tps)
        # A sim request's service time is predictable before any has completed.
        prior = 16 / settings.sim_decode_tps
    else:
        from node.backends.transformers_backend import TransformersBackend

        if spec.source == "embedded":
            from node.embedded import embedded_gguf

            try:
                source = embedded_gguf()
            except FileNotFoundError as exc:
                backend = _Missing(str(exc))
            else:
                backend = TransformersBackend(
                    spec.id, source, device=settings.device, workers=settings.limits.max_in_flight
                )
        else:
            backend = TransformersBackend(
                spec.id,
                Path(spec.source),
                device=settings.device,
                workers=settings.limits.max_in_flight,
            )
        prior = 2.0
    admission = AdmissionController(
        limits=settings.limits, estimator=ServiceTimeEstimator(prior_s=prior), on_change=on_change
    )
    return ServedModel(spec, backend, admission, _on_change=on_change)


class _Missing(Backend):
    """A model whose files are absent: fails its load with the reason."""

    kind = "transformers"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def load(self) -> None:
        await asyncio.sleep(0)
        raise FileNotFoundError(self.reason)

    def encode_chat(self, messages: Any) -> Any:
        raise RuntimeError(self.reason)

    def encode_text(self, text: str) -> Any:
        raise RuntimeError(self.reason)

    def generate(self, prompt: Any, params: Any, stats: Any) -> Any:
        raise RuntimeError(self.reason)
