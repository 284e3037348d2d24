"""``fleet control``: run the xDS control plane until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from fleet import logs
from fleet.addr import hostport_arg
from xds_control.config import ConfigError, FleetConfig, load_config

log = logging.getLogger("xds_control.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet control",
        description="Serve Envoy its routes, clusters and weighted endpoints over ADS, "
        "from an operator config file (hot-reloaded) and sidecar load reports.",
    )
    parser.add_argument("--config", required=True, help="operator config file (YAML)")
    parser.add_argument(
        "--xds",
        type=hostport_arg,
        default=("127.0.0.1", 18000),
        metavar="HOST:PORT",
        help="gRPC listen address for ADS and sidecar load reports (default 127.0.0.1:18000)",
    )
    parser.add_argument(
        "--http",
        type=hostport_arg,
        default=("127.0.0.1", 18080),
        metavar="HOST:PORT",
        help="HTTP listen address for /metrics, /healthz, /snapshot (default 127.0.0.1:18080)",
    )
    parser.add_argument(
        "--coalesce-ms",
        type=float,
        default=20.0,
        help="window that merges bursts of load changes into one push (default 20)",
    )
    parser.add_argument(
        "--resync-s",
        type=float,
        default=6.0,
        help="after a restart, how long an Envoy that reconnects with a prior config keeps "
        "it while sidecars dial back in (default 6: above the sidecars' 5 s backoff cap)",
    )
    parser.add_argument("--no-watch", action="store_true", help="do not hot-reload the config file")
    logs.add_arguments(parser)
    return parser


async def _run(args: argparse.Namespace, config: FleetConfig) -> int:
    from xds_control.app import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(
            config,
            args.config,
            args.xds,
            args.http,
            stop,
            coalesce_s=args.coalesce_ms / 1000.0,
            resync_s=args.resync_s,
            watch=not args.no_watch,
        )
    except (OSError, RuntimeError) as exc:
        log.error("cannot serve", extra={"fields": {"error": str(exc)}})
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logs.setup(args.log_level, args.log_format)
    if args.coalesce_ms < 0 or args.resync_s < 0:
        print("fleet control: --coalesce-ms and --resync-s must be >= 0", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"fleet control: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, config))


if __name__ == "__main__":
    sys.exit(main())
