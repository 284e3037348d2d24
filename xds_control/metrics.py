"""The control plane's own Prometheus metrics, on a registry of its own.

A private registry (not the process-global default) keeps tests that build several
control planes in one process independent, and keeps /metrics free of unrelated series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every series the control plane exports; names are prefixed ``fleet_control_``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connected_envoys = Gauge(
            "fleet_control_connected_envoys",
            "Envoy ADS streams currently open",
            ["api"],
            registry=r,
        )
        self.pushes = Counter(
            "fleet_control_xds_pushes",
            "xDS responses sent to Envoys, by resource type",
            ["type"],
            registry=r,
        )
        self.nacks = Counter(
            "fleet_control_xds_nacks",
            "xDS responses Envoys rejected (NACK), by resource type",
            ["type"],
            registry=r,
        )
        self.snapshot_version = Gauge(
            "fleet_control_snapshot_version",
            "Serial of the current snapshot (moves only when resources change)",
            registry=r,
        )
        self.snapshot_builds = Counter(
            "fleet_control_snapshot_builds",
            "Snapshot rebuilds after coalescing fleet or config changes",
            registry=r,
        )
        self.sidecars = Gauge(
            "fleet_control_connected_sidecars",
            "Load-report streams currently open",
            registry=r,
        )
        self.reports = Counter(
            "fleet_control_load_reports",
            "Load reports received, by kind",
            ["kind"],
            registry=r,
        )
        self.report_lag = Histogram(
            "fleet_control_report_lag_seconds",
            "Delay from a sidecar observing load to the control plane receiving it",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.nodes = Gauge(
            "fleet_control_nodes",
            "Nodes known to the control plane, by status",
            ["status"],
            registry=r,
        )
        self.config_reloads = Counter(
            "fleet_control_config_reloads",
            "Operator config reload attempts, by result",
            ["result"],
            registry=r,
        )
        self.config_ok = Gauge(
            "fleet_control_config_last_reload_ok",
            "1 when the last config reload succeeded, 0 when it was refused",
            registry=r,
        )
        self.config_ok.set(1)
        # Every known label value exists from the start, so dashboards see zeros.
        for kind in ("cds", "eds", "lds", "rds"):
            self.pushes.labels(kind)
            self.nacks.labels(kind)
        for api in ("sotw", "delta"):
            self.connected_envoys.labels(api)
        for result in ("ok", "error"):
            self.config_reloads.labels(result)
        for report_kind in ("load", "heartbeat", "out_of_order", "invalid"):
            self.reports.labels(report_kind)
