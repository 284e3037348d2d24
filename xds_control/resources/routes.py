"""RDS: route by the body's `model` (ids and aliases) to the model's cluster.

Order (first match wins):

1. ``GET /v1/models`` -> answered by Envoy from the live catalog.
2. one route per model id and alias: metadata ``model`` == name -> that model's cluster,
   with header ``x-fleet-model: <id>`` (the body is not rewritten), ``timeout: 0s`` (a
   total deadline would cut long streams) plus an idle timeout, and a retry on a
   *different* replica when the request never reached a node or (``retry_on_rejection``)
   the node answered with ``x-admission-rejected``.
3. on the inference paths: body not JSON -> 400 ``invalid_json``; no ``model`` -> 400
   (``param: model``); any other model -> 404 ``model_not_found``.

Anything else matches no route and gets the listener's 404 ``unknown_url`` reply.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from google.protobuf import json_format

from xds_control.config import FleetConfig, ModelConfig
from xds_control.resources.common import (
    BODY_FILTER,
    INVALID,
    MISSING,
    MODEL_KEY,
    ROUTE_CONFIG_NAME,
    duration,
    envelope,
)

INFERENCE_PATHS_RE = r"^/v1/(chat/)?completions$"
REJECTION_HEADER = "x-admission-rejected"
# The model id a request was routed for: Envoy does not rewrite the body, so a node
# receiving an alias can read the canonical id here.
MODEL_HEADER = "x-fleet-model"
MODEL_METADATA = f"%DYNAMIC_METADATA({BODY_FILTER}:{MODEL_KEY})%"


def _metadata_match(value: str | None, *, invert: bool = False) -> dict[str, Any]:
    """Match the body filter's `model` metadata: exact value, or (None) mere presence."""
    matcher: dict[str, Any] = (
        {"present_match": True} if value is None else {"string_match": {"exact": value}}
    )
    return {
        "filter": BODY_FILTER,
        "path": [{"key": MODEL_KEY}],
        "value": matcher,
        "invert": invert,
    }


# Retried on another replica whatever the config says: the request never reached a node.
UNSENT_RETRY_ON = ("connect-failure", "refused-stream", "reset-before-request")


def retry_policy(model: ModelConfig, replicas: int) -> rc.RetryPolicy:
    """Retry on another replica at once, up to every replica: requests that never reached
    a node, and (``retry_on_rejection``) a node's admission refusal."""
    return _retry_policy(model.retry_on_rejection, model.max_retries, replicas)


def _retry_policy(on_rejection: bool, max_retries: int | None, replicas: int) -> rc.RetryPolicy:
    retries = max_retries if max_retries is not None else max(1, replicas - 1)
    retry_on = list(UNSENT_RETRY_ON)
    spec: dict[str, Any] = {
        "num_retries": retries,
        # previous_hosts re-draws a host it already tried at most this often: enough
        # that with one free replica among N a retry still finds it (~1 - e^-5)
        "host_selection_retry_max_attempts": min(100, 5 * max(1, replicas)),
        # Never rate_limited_retry_back_off: it honours Retry-After (seconds).
        "retry_back_off": {"base_interval": "0.001s", "max_interval": "0.002s"},
    }
    if on_rejection:
        retry_on.insert(0, "retriable-headers")
        spec["retriable_headers"] = [{"name": REJECTION_HEADER, "present_match": True}]
    spec["retry_on"] = ",".join(retry_on)
    policy = json_format.ParseDict(spec, rc.RetryPolicy())
    predicate = policy.retry_host_predicate.add(name="envoy.retry_host_predicates.previous_hosts")
    predicate.typed_config.Pack(previous_hosts_pb2.PreviousHostsPredicate())
    return policy


def model_route(name: str, model: ModelConfig, replicas: int) -> rc.Route:
    """Requests whose body names ``name`` (the id or an alias) go to the model's cluster."""
    wire = _model_route_wire(
        name, model.id, model.idle_timeout_s, model.retry_on_rejection, model.max_retries, replicas
    )
    return rc.Route.FromString(wire)


# Routes only change with config or replica counts, but are rebuilt on every load report:
# memoise their wire form (bytes: immutable, so no caller can alter a shared copy).
@functools.lru_cache(maxsize=4096)
def _model_route_wire(
    name: str,
    model_id: str,
    idle_timeout_s: float,
    on_rejection: bool,
    max_retries: int | None,
    replicas: int,
) -> bytes:
    route = json_format.ParseDict(
        {
            "name": f"model:{name}",
            "match": {"prefix": "/", "dynamic_metadata": [_metadata_match(name)]},
            "request_headers_to_add": [
                {
                    "header": {"key": MODEL_HEADER, "value": model_id},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
        },
        rc.Route(),
    )
    action = route.route
    action.cluster = model_id
    action.timeout.CopyFrom(duration(0))
    action.idle_timeout.CopyFrom(duration(idle_timeout_s))
    action.retry_policy.CopyFrom(_retry_policy(on_rejection, max_retries, replicas))
    return route.SerializeToString(deterministic=True)


def _direct(name: str, match: dict[str, Any], status: int, body: dict[str, Any]) -> rc.Route:
    return json_format.ParseDict(
        {
            "name": name,
            "match": match,
            "direct_response": {"status": status, "body_format": {"json_format": body}},
        },
        rc.Route(),
    )


def catalog_body(live: list[str]) -> str:
    """The ``GET /v1/models`` answer: every id and alias that has a routable replica."""
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "envoy-llm-fleet"} for n in live]
    return json.dumps({"object": "list", "data": data}, separators=(",", ":"))


def catalog_route(live: list[str]) -> rc.Route:
    """Envoy answers the model list itself (names cannot contain the format char '%')."""
    return json_format.ParseDict(
        {
            "name": "catalog",
            "match": {
                "path": "/v1/models",
                "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
            },
            "direct_response": {
                "status": 200,
                "body_format": {
                    "text_format_source": {"inline_string": catalog_body(live)},
                    "content_type": "application/json",
                },
            },
        },
        rc.Route(),
    )


def error_routes() -> list[rc.Route]:
    """400/404 envelopes for inference requests no model route took."""
    return [rc.Route.FromString(wire) for wire in _error_routes_wire()]


@functools.lru_cache(maxsize=1)
def _error_routes_wire() -> tuple[bytes, ...]:
    return tuple(r.SerializeToString(deterministic=True) for r in _build_error_routes())


def _build_error_routes() -> list[rc.Route]:
    paths = {"safe_regex": {"regex": INFERENCE_PATHS_RE}}
    missing = envelope(
        "You must provide a model parameter.", "invalid_request_error", None, MODEL_KEY
    )
    return [
        _direct(
            "invalid_json",
            {**paths, "dynamic_metadata": [_metadata_match(INVALID)]},
            400,
            envelope(
                "We could not parse the JSON body of your request. "
                "Send a JSON object with content-type application/json.",
                "invalid_request_error",
                "invalid_json",
            ),
        ),
        _direct(
            "missing_model",
            {**paths, "dynamic_metadata": [_metadata_match(MISSING)]},
            400,
            missing,
        ),
        _direct(
            "empty_model",
            {**paths, "dynamic_metadata": [_metadata_match(None, invert=True)]},
            400,
            missing,
        ),
        _direct(
            "model_not_found",
            paths,
            404,
            envelope(
                f"The model `{MODEL_METADATA}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                MODEL_KEY,
            ),
        ),
    ]


def route_configuration(
    config: FleetConfig, replicas: Mapping[str, int]
) -> route_pb2.RouteConfiguration:
    """The one route table; ``replicas`` = routable endpoints per model id."""
    live = [n for m in config.models if replicas.get(m.id, 0) > 0 for n in m.names]
    vhost = rc.VirtualHost(name="public", domains=["*"])
    vhost.routes.append(catalog_route(live))
    for model in config.models:
        for name in model.names:
            vhost.routes.append(model_route(name, model, replicas.get(model.id, 0)))
    vhost.routes.extend(error_routes())
    return route_pb2.RouteConfiguration(name=ROUTE_CONFIG_NAME, virtual_hosts=[vhost])
