"""``fleet sidecar``: flags in, a running sidecar out."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import urllib.parse

from fleet import logs
from fleet.addr import hostport_arg


def node_url_arg(text: str) -> str:
    """An http(s) base URL with a host; its path is dropped (endpoints are fixed)."""
    url = urllib.parse.urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT, got {text!r}")
    try:
        url.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}: {exc}") from None
    return f"{url.scheme}://{url.netloc}"


def default_advertise(node_url: str) -> tuple[str, int]:
    url = urllib.parse.urlsplit(node_url)
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def grpc_target(host: str, port: int) -> str:
    """gRPC's target syntax (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _positive_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {text!r}") from None
    if not 1 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"must be within 1..60000 ms, got {text!r}")
    return value / 1000.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleet sidecar",
        description="Export one node's per-model load to Prometheus (/metrics) and push it "
        "to the control plane over gRPC.",
    )
    p.add_argument(
        "--node", required=True, type=node_url_arg, metavar="URL", help="the node, http://HOST:PORT"
    )
    p.add_argument(
        "--listen",
        type=hostport_arg,
        default=("127.0.0.1", 9101),
        metavar="HOST:PORT",
        help="where /metrics and /healthz are served (default 127.0.0.1:9101)",
    )
    p.add_argument(
        "--control",
        type=hostport_arg,
        default=("127.0.0.1", 18000),
        metavar="HOST:PORT",
        help="the control plane's gRPC address (default 127.0.0.1:18000)",
    )
    p.add_argument(
        "--advertise",
        type=hostport_arg,
        default=None,
        metavar="HOST:PORT",
        help="the node address Envoy should dial (default: the --node URL's host:port)",
    )
    p.add_argument("--name", default=None, help="node name (default: the node's /health name)")
    p.add_argument(
        "--node-source",
        choices=["auto", "stream", "poll"],
        default="auto",
        help="read /health/stream, poll /health, or stream with a poll fallback (auto)",
    )
    p.add_argument(
        "--poll-interval-ms",
        type=_positive_ms,
        default=0.05,
        metavar="MS",
        help="/health poll interval when polling (50)",
    )
    logs.add_arguments(p)
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.name is not None and not args.name.strip():
        parser.error("--name must not be empty")
    logs.setup(args.log_level, args.log_format)
    # gRPC core logs every GOAWAY at INFO on stderr: keep it quiet unless asked (read at import).
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from sidecar.service import Settings, serve

    settings = Settings(
        node_url=args.node,
        listen=args.listen,
        control=grpc_target(*args.control),
        advertise=args.advertise or default_advertise(args.node),
        name=args.name,
        source=args.node_source,
        poll_interval_s=args.poll_interval_ms,
    )
    try:
        return asyncio.run(serve(settings))
    except OSError as exc:  # e.g. the --listen port is taken
        print(f"fleet sidecar: {exc}", file=sys.stderr)
        return 1
