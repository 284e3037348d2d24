"""Wiring of the control plane's logic: config + fleet state -> build_snapshot -> cache.

Rebuilds are coalesced and rate-limited: a change after a quiet period is built on the
next loop pass (so an isolated weight change reaches Envoy in a few ms), and at most one
build runs per ``coalesce_s`` window (tens of ms): every change arriving meanwhile rides
along with the next one, so a burst of reports costs one or two builds. The cache then
drops whatever did not actually change, so streams are only woken for real differences.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from fleet.proto import load_pb2
from xds_control.cache import SnapshotCache
from xds_control.fleet_state import FleetState, NodeState
from xds_control.fleet_store import FleetStore
from xds_control.metrics import Metrics
from xds_control.resource_types import short_name

if TYPE_CHECKING:
    from xds_control.config import FleetConfig

log = logging.getLogger("xds_control.control")


class _Snapshot(Protocol):
    @property
    def resources(self) -> Any: ...


Builder = Callable[["FleetConfig", FleetState], _Snapshot]


def _default_builder() -> Builder:
    from xds_control.snapshot import build_snapshot

    return build_snapshot


class ControlPlane:
    """Owns the live config, the fleet store and the rebuild schedule; no sockets."""

    def __init__(
        self,
        config: FleetConfig,
        config_path: str | os.PathLike[str],
        cache: SnapshotCache,
        metrics: Metrics,
        *,
        coalesce_s: float = 0.02,
        builder: Builder | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.cache = cache
        self.metrics = metrics
        self.coalesce_s = coalesce_s
        self._builder = builder or _default_builder()
        self.store = FleetStore(config.stale_after_s, self.request_rebuild)
        self._timer: asyncio.TimerHandle | None = None
        self._last_build = float("-inf")
        self._warned: set[tuple[str, str]] = set()
        self.builds = 0
        self.on_settings_changed: Callable[[], None] = lambda: None

    # -- inputs ------------------------------------------------------------------------

    def on_node(self, node: NodeState) -> None:
        """A sidecar's report; models the config does not declare are ignored (logged once)."""
        declared = {m.id for m in self.config.models}
        for model in node.models:
            if model not in declared and (node.name, model) not in self._warned:
                self._warned.add((node.name, model))
                log.warning(
                    "node reports a model the config does not declare; not routed",
                    extra={"fields": {"node": node.name, "model": model}},
                )
        self.store.update(node)

    def reload(self) -> bool:
        """Re-read the config file; a bad edit is refused and the last good config stays."""
        from xds_control.config import ConfigError, load_config

        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.metrics.config_reloads.labels("error").inc()
            self.metrics.config_ok.set(0)
            log.error(
                "config reload refused; keeping the last good config",
                extra={"fields": {"error": str(exc)}},
            )
            return False
        self.metrics.config_ok.set(1)
        if config == self.config:
            return True  # touched or re-saved unchanged: nothing to count or push
        self.metrics.config_reloads.labels("ok").inc()
        stale_changed = config.stale_after_s != self.config.stale_after_s
        self.config = config
        self.store.stale_after_s = config.stale_after_s
        self._warned.clear()
        if stale_changed:
            self.on_settings_changed()
        changed = self.rebuild()
        log.info(
            "config reloaded",
            extra={"fields": {"changed": ",".join(short_name(t) for t in sorted(changed))}},
        )
        return True

    def settings(self) -> load_pb2.LoadReportResponse:
        """What sidecars are told: heartbeat well inside the staleness TTL."""
        stale_ms = int(self.config.stale_after_s * 1000)
        return load_pb2.LoadReportResponse(
            heartbeat_interval_ms=max(stale_ms // 3, 50), stale_after_ms=stale_ms
        )

    # -- rebuilds ----------------------------------------------------------------------

    def request_rebuild(self) -> None:
        """Build soon: at once after a quiet window, else when the window ends."""
        if self._timer is not None:
            return  # a build is already scheduled; this change rides along
        loop = asyncio.get_running_loop()
        wait = self._last_build + self.coalesce_s - loop.time()
        # call_later(<=0) still runs on a later loop pass, after reports already queued.
        self._timer = loop.call_later(max(wait, 0.0), self._flush)

    def _flush(self) -> None:
        self._timer = None
        self._last_build = asyncio.get_running_loop().time()
        self.rebuild()

    def rebuild(self) -> set[str]:
        """Build now and publish; returns the changed type URLs. A failing build keeps the last."""
        try:
            snapshot = self._builder(self.config, self.store.state())
        except Exception:
            log.exception("snapshot build failed; keeping the previous snapshot")
            return set()
        changed = self.cache.set_resources(snapshot.resources)
        self.builds += 1
        self.metrics.snapshot_builds.inc()
        self.update_gauges()
        if changed:
            log.debug(
                "snapshot changed",
                extra={
                    "fields": {
                        "serial": self.cache.snapshot.serial,
                        "types": ",".join(short_name(t) for t in sorted(changed)),
                    }
                },
            )
        return changed

    def update_gauges(self) -> None:
        """Refresh gauges that drift with time (staleness), at build and at scrape."""
        self.metrics.snapshot_version.set(self.cache.snapshot.serial)
        for status, count in self.store.counts().items():
            self.metrics.nodes.labels(status).set(count)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.store.close()
