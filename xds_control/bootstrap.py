"""The Envoy bootstrap that points Envoy at this control plane over ADS.

Everything routable comes from xDS; the bootstrap only names the control plane (a
static cluster speaking HTTP/2, as gRPC needs) and puts the admin API on loopback.
``python -m xds_control.bootstrap`` prints the default file shipped as envoy/bootstrap.yaml.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any, Literal

XDS_CLUSTER = "xds_control"
DEFAULT_XDS_PORT = 18000
DEFAULT_ADMIN_PORT = 9901
DEFAULT_NODE_ID = "fleet-envoy"
MAX_DOWNSTREAM_CONNECTIONS = 50_000


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def render_bootstrap(
    *,
    xds_host: str,
    xds_port: int,
    admin_host: str = "127.0.0.1",
    admin_port: int,
    node_id: str,
    cluster: str = "fleet",
    api_type: Literal["GRPC", "DELTA_GRPC"] = "GRPC",
) -> dict[str, Any]:
    """A bootstrap dict (JSON/YAML-ready) using ADS (SotW or Delta) to ``xds_host:xds_port``."""
    if api_type not in ("GRPC", "DELTA_GRPC"):
        raise ValueError(f"api_type must be GRPC or DELTA_GRPC, got {api_type!r}")
    if not node_id:
        raise ValueError("node_id must not be empty")
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": node_id, "cluster": cluster},
        "admin": {"address": {"socket_address": {"address": admin_host, "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            },
            "cds_config": dict(ads_source),
            "lds_config": dict(ads_source),
        },
        # A bound on open client connections (Envoy warns at start without one).
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                    },
                }
            ]
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    # A hostname (compose service name) is resolved; an IP is used as is.
                    "type": "STATIC" if _is_ip(xds_host) else "STRICT_DNS",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {
                                "http2_protocol_options": {
                                    # Keep the ADS stream alive through idle periods.
                                    "connection_keepalive": {
                                        "interval": "30s",
                                        "timeout": "5s",
                                    }
                                }
                            },
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": xds_host,
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }


def default_bootstrap() -> dict[str, Any]:
    """What envoy/bootstrap.yaml holds: the local defaults of ``fleet up``."""
    return render_bootstrap(
        xds_host="127.0.0.1",
        xds_port=DEFAULT_XDS_PORT,
        admin_port=DEFAULT_ADMIN_PORT,
        node_id=DEFAULT_NODE_ID,
    )


def main() -> None:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 200
    sys.stdout.write(
        "# Generated by `python -m xds_control.bootstrap`: Envoy fed only by the control\n"
        "# plane over ADS (127.0.0.1:18000), admin on loopback. Do not edit by hand.\n"
    )
    yaml.dump(default_bootstrap(), sys.stdout)


if __name__ == "__main__":
    main()
