"""CDS: one EDS-over-ADS cluster per model, named after the model id.

Outlier detection ejects hosts for local-origin failures only (connect failures, resets,
timeouts): Envoy counts a node's admission 503 as a 5xx and as a gateway failure, so
both 5xx detectors and success-rate detection are kept from ejecting — a busy node is
healthy, and the weight policy already steers traffic away from it. Panic routing is
off so that "every replica down" is a clean 503 rather than traffic to dead hosts, and
the retry circuit breaker is raised so that concurrent admission retries are not cut
off at Envoy's default of 3.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2

from xds_control.config import ModelConfig, OutlierDetectionConfig
from xds_control.resources.common import ads_source, duration

LB_POLICIES: dict[str, cluster_pb2.Cluster.LbPolicy.ValueType] = {
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "RANDOM": cluster_pb2.Cluster.RANDOM,
}
# Concurrency limits per cluster (Envoy's defaults are 1024 requests but 3 retries).
MAX_REQUESTS = 4096


def outlier_detection(cfg: OutlierDetectionConfig) -> outlier_detection_pb2.OutlierDetection:
    """Eject on connection-level failures; never on HTTP status codes."""
    od = outlier_detection_pb2.OutlierDetection()
    od.split_external_local_origin_errors = True
    od.consecutive_local_origin_failure.value = cfg.consecutive_local_origin_failure
    od.enforcing_consecutive_local_origin_failure.value = 100
    od.enforcing_local_origin_success_rate.value = 0
    od.enforcing_consecutive_5xx.value = 0
    od.enforcing_consecutive_gateway_failure.value = 0
    od.enforcing_success_rate.value = 0
    od.enforcing_failure_percentage.value = 0
    od.enforcing_failure_percentage_local_origin.value = 0
    od.interval.CopyFrom(duration(cfg.interval_s))
    od.base_ejection_time.CopyFrom(duration(cfg.base_ejection_time_s))
    od.max_ejection_percent.value = cfg.max_ejection_percent
    return od


def model_cluster(model: ModelConfig, buffer_limit_bytes: int) -> cluster_pb2.Cluster:
    """The model's cluster; its endpoints arrive as a same-named ClusterLoadAssignment."""
    cluster = cluster_pb2.Cluster(name=model.id, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.CopyFrom(ads_source())
    cluster.connect_timeout.CopyFrom(duration(model.connect_timeout_s))
    cluster.lb_policy = LB_POLICIES[model.lb_policy]
    cluster.common_lb_config.healthy_panic_threshold.value = 0.0
    # Retries replay the buffered body: keep the same limit as the listener.
    cluster.per_connection_buffer_limit_bytes.value = buffer_limit_bytes
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(priority=base_pb2.DEFAULT)
    thresholds.max_connections.value = MAX_REQUESTS
    thresholds.max_pending_requests.value = MAX_REQUESTS
    thresholds.max_requests.value = MAX_REQUESTS
    thresholds.max_retries.value = MAX_REQUESTS
    cluster.circuit_breakers.thresholds.append(thresholds)
    if model.outlier_detection.enabled:
        cluster.outlier_detection.CopyFrom(outlier_detection(model.outlier_detection))
    return cluster
