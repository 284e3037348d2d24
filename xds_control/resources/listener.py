"""LDS: the public listener, whose HTTP connection manager reads `model` from the body.

Filter chain: json_to_metadata (body ``model`` -> dynamic metadata, sentinels when it is
absent or the body is not JSON) then the router; routes come by RDS over ADS. Envoy's
own error replies are mapped to OpenAI envelopes with per-flag mappers, never a
top-level body_format (that would double-wrap the routes' direct responses), and never
touching an upstream's own 503.
"""

from __future__ import annotations

import functools
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.json_to_metadata.v3 import json_to_metadata_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format

from xds_control.config import FleetConfig
from xds_control.resources.common import (
    BODY_FILTER,
    INVALID,
    LISTENER_NAME,
    MISSING,
    MODEL_KEY,
    ROUTE_CONFIG_NAME,
    ads_source,
    envelope,
)

# The filter compares content types as exact strings.
JSON_CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=utf-8",
    "application/json; charset=UTF-8",
    "application/json;charset=UTF-8",
    "Application/JSON",
)


def body_filter() -> json_to_metadata_pb2.JsonToMetadata:
    """Body `model` -> metadata `model`; MISSING / INVALID sentinels otherwise."""

    def pair(value: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"metadata_namespace": BODY_FILTER, "key": MODEL_KEY}
        if value is None:
            out["type"] = "STRING"
        else:
            out["value"] = value  # a protobuf Value: plain JSON in ParseDict
        return out

    rules = {
        "rules": [
            {
                "selectors": [{"key": MODEL_KEY}],
                "on_present": pair(None),
                "on_missing": pair(MISSING),
                "on_error": pair(INVALID),
            }
        ],
        "allow_content_types": list(JSON_CONTENT_TYPES),
        "allow_empty_content_type": True,
    }
    return json_format.ParseDict({"request_rules": rules}, json_to_metadata_pb2.JsonToMetadata())


def _flags(*flags: str) -> dict[str, Any]:
    return {"response_flag_filter": {"flags": list(flags)}}


def _status_is(status: int) -> dict[str, Any]:
    # runtime_key is required; nothing sets it, so the default applies
    value = {"default_value": status, "runtime_key": f"fleet.reply_{status}"}
    return {"status_code_filter": {"comparison": {"op": "EQ", "value": value}}}


def _mapper(flt: dict[str, Any], body: dict[str, Any], status: int | None) -> dict[str, Any]:
    """Rewrite matching local replies' body (and status, unless ``None``: keep Envoy's)."""
    out: dict[str, Any] = {"filter": flt, "body_format_override": {"json_format": body}}
    if status is not None:
        out["status_code"] = status
    return out


def local_reply_mappers(max_request_bytes: int) -> list[dict[str, Any]]:
    """Envoy's own replies as OpenAI envelopes (order matters: first match wins)."""
    unavailable = envelope(
        "No replica of this model can take the request right now; retry shortly.",
        "server_error",
        "service_unavailable",
    )
    return [
        _mapper(
            _flags("NR"),
            envelope(
                "Unknown request URL: %REQ(:METHOD)% %REQ(:PATH)%.",
                "invalid_request_error",
                "unknown_url",
            ),
            404,
        ),
        _mapper(_flags("UH", "NC", "UF", "UO", "URX"), unavailable, 503),
        _mapper(
            _flags("UT"),
            envelope("The model did not answer in time.", "server_error", "timeout"),
            504,
        ),
        # Stream idle timeout: 504 when the node went silent, 408 when the client did.
        _mapper(
            _flags("SI"),
            envelope("No data was exchanged for too long.", "server_error", "timeout"),
            None,
        ),
        _mapper(
            _status_is(413),
            envelope(
                f"The request body is larger than {max_request_bytes} bytes.",
                "invalid_request_error",
                "request_too_large",
            ),
            413,
        ),
    ]


def connection_manager(config: FleetConfig) -> hcm_pb2.HttpConnectionManager:
    """HCM: body filter, router, RDS over ADS, OpenAI-shaped local replies."""
    wire = _connection_manager_wire(config.listener.max_request_bytes)
    return hcm_pb2.HttpConnectionManager.FromString(wire)


# Rebuilt on every load report but it only depends on one config value: memoise its
# wire form (bytes: immutable, so no caller can alter a shared copy).
@functools.lru_cache(maxsize=16)
def _connection_manager_wire(max_request_bytes: int) -> bytes:
    hcm = json_format.ParseDict(
        {
            "stat_prefix": LISTENER_NAME,
            "codec_type": "AUTO",
            # An edge proxy: clients are external, so their x-envoy-* headers (which
            # could force retries or timeouts) are stripped, and paths are normalised.
            "use_remote_address": True,
            "normalize_path": True,
            "merge_slashes": True,
            "local_reply_config": {"mappers": local_reply_mappers(max_request_bytes)},
        },
        hcm_pb2.HttpConnectionManager(),
    )
    hcm.rds.config_source.CopyFrom(ads_source())
    hcm.rds.route_config_name = ROUTE_CONFIG_NAME
    body = hcm.http_filters.add(name=BODY_FILTER)
    body.typed_config.Pack(body_filter())
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    return hcm.SerializeToString(deterministic=True)


def public_listener(config: FleetConfig) -> listener_pb2.Listener:
    """The one public listener on ``config.listener``."""
    lst = listener_pb2.Listener(name=LISTENER_NAME)
    sock = lst.address.socket_address
    sock.address = config.listener.address
    sock.port_value = config.listener.port
    # Bodies are buffered whole to read `model`: the default 1 MiB would 413 big prompts.
    lst.per_connection_buffer_limit_bytes.value = config.listener.max_request_bytes
    hcm = lst.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager")
    hcm.typed_config.Pack(connection_manager(config))
    return lst
