"""Structured, quiet-by-default logging shared by every fleet process.

One line per event, ``logfmt`` style (``ts=… level=… logger=… msg=… key=value``) or JSON
with ``--log-format json``; INFO shows lifecycle events only, per-request lines are DEBUG.
Pass structured fields with ``log.info("msg", extra={"fields": {...}})``. Never log API
keys: :func:`redact` masks any field whose name looks secret.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

_SECRET_HINTS = ("key", "token", "secret", "password", "authorization")


def redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Mask values whose field name suggests a credential."""
    return {
        k: ("***" if any(h in k.lower() for h in _SECRET_HINTS) else v) for k, v in fields.items()
    }


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


class LogfmtFormatter(logging.Formatter):
    """``key=value`` lines: greppable by humans, parseable by Loki/Vector."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            parts += [f"{k}={_quote(v)}" for k, v in redact(fields).items()]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            out.update(redact(fields))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level: str | None = None, fmt: str | None = None) -> None:
    """Configure the root logger once per process (flags beat FLEET_LOG_LEVEL/FORMAT)."""
    level = (level or os.environ.get("FLEET_LOG_LEVEL") or "info").upper()
    fmt = (fmt or os.environ.get("FLEET_LOG_FORMAT") or "logfmt").lower()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter stays out of INFO.
    for noisy in ("tornado.access", "grpc", "asyncio", "urllib3", "httpx", "watchfiles"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def add_arguments(parser: Any) -> None:
    """The two logging flags every process takes."""
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info, or $FLEET_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        default=None,
        choices=["logfmt", "json"],
        help="log line format (default: logfmt, or $FLEET_LOG_FORMAT)",
    )
