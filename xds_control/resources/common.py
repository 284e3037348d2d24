"""Pieces shared by the resource builders: the ADS config source and error envelopes."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import config_source_pb2
from google.protobuf import duration_pb2

LISTENER_NAME = "public"
ROUTE_CONFIG_NAME = "public_routes"
# json_to_metadata writes under its own filter name unless told otherwise.
BODY_FILTER = "envoy.filters.http.json_to_metadata"
MODEL_KEY = "model"
# Values the body filter writes when `model` is absent / the body is not JSON. They
# cannot collide with a model name: names must start with a letter or digit.
MISSING = "__missing__"
INVALID = "__invalid__"


def ads_source() -> config_source_pb2.ConfigSource:
    """Resources that come over the same ADS stream, in the v3 API."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def duration(seconds: float) -> duration_pb2.Duration:
    """A protobuf Duration with millisecond precision."""
    d = duration_pb2.Duration()
    d.FromMilliseconds(round(seconds * 1000))
    return d


def envelope(message: str, type_: str, code: str | None, param: str | None = None) -> Any:
    """The OpenAI error body (as a JSON-ready dict) Envoy answers with on its own."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
