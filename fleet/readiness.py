"""When a local fleet is ready, and the progress lines shown until then.

Ready means what a user needs: every model is loaded on at least one node AND a request
for it through Envoy answers 200 (so routes, clusters and endpoints have all arrived).
The tracking is pure (``Progress``); the two probes below are the only I/O.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

STARTING = "starting"  # the node's HTTP port does not answer yet


@dataclass
class Progress:
    """Last seen state of every (node, model); turns new /health answers into change lines."""

    models: tuple[str, ...]
    states: dict[str, dict[str, str]] = field(default_factory=dict)

    def update(self, node: str, health: Mapping[str, Any] | None) -> list[str]:
        """Record one node's /health (None: unreachable); return a line per state change."""
        now = _model_states(health) if health is not None else {}
        before = self.states.get(node)
        self.states[node] = now
        if health is None:
            return [f"{node}: {STARTING}"] if before is None or before else []
        lines = []
        for model in sorted(now):
            if (before or {}).get(model) != now[model]:
                lines.append(f"{node}: {model} {now[model]}")
        return lines

    def loaded(self) -> set[str]:
        return {m for s in self.states.values() for m, st in s.items() if st == "loaded"}

    def missing(self) -> list[str]:
        """Models not yet loaded anywhere."""
        return [m for m in self.models if m not in self.loaded()]

    def failed_everywhere(self, nodes: Iterable[str]) -> list[str]:
        """Models every node reports as failed: waiting longer will not help."""
        names = list(nodes)
        return [
            m
            for m in self.models
            if names and all(self.states.get(n, {}).get(m) == "failed" for n in names)
        ]


def _model_states(health: Mapping[str, Any]) -> dict[str, str]:
    models = health.get("models")
    if not isinstance(models, list):
        return {}
    return {
        str(m["id"]): str(m.get("state", "unknown"))
        for m in models
        if isinstance(m, dict) and "id" in m
    }


def fetch_health(base_url: str, timeout_s: float = 1.0) -> dict[str, Any] | None:
    """A node's /health as JSON, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def probe_chat(endpoint: str, model: str, timeout_s: float = 30.0) -> int:
    """POST a one-token chat completion through Envoy; the HTTP status (0: no answer)."""
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    ).encode()
    req = urllib.request.Request(
        f"{endpoint}/chat/completions",
        data=body,
        method="POST",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0
