"""``fleet node``: flags in, a running node out."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import socket

from fleet import logs
from fleet.addr import hostport_arg
from node.admission import AdmissionLimits
from node.app import DEFAULT_MAX_BODY_BYTES, build_context
from node.models import ModelSpec, NodeSettings, parse_model_spec

log = logging.getLogger("node")


def _model_arg(text: str) -> ModelSpec:
    try:
        return parse_model_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleet node",
        description="Run one OpenAI-compatible inference node with per-model admission control.",
    )
    p.add_argument("--name", default=socket.gethostname(), help="node name (default: hostname)")
    p.add_argument(
        "--listen",
        type=hostport_arg,
        default=("127.0.0.1", 8101),
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8101)",
    )
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        type=_model_arg,
        default=[],
        metavar="ID[=SOURCE]",
        help="model to serve; SOURCE is sim, embedded or a HF directory / .gguf file "
        "(repeatable; default: the embedded smollm2-135m-instruct)",
    )
    p.add_argument("--max-in-flight", type=_positive_int, default=1, help="running per model (1)")
    p.add_argument(
        "--max-queue-depth", type=_non_negative_int, default=8, help="waiting per model (8)"
    )
    p.add_argument(
        "--max-wait-s", type=_positive_float, default=30.0, help="longest queue wait, s (30)"
    )
    p.add_argument("--sim-decode-tps", type=_positive_float, default=50.0, help="sim tokens/s (50)")
    p.add_argument(
        "--sim-prefill-tps", type=_positive_float, default=2000.0, help="sim prompt tokens/s (2000)"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest request body accepted, larger gets 413 (8 MiB)",
    )
    logs.add_arguments(p)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    specs = args.models or [parse_model_spec("embedded")]
    settings = NodeSettings(
        limits=AdmissionLimits(args.max_in_flight, args.max_queue_depth, args.max_wait_s),
        sim_decode_tps=args.sim_decode_tps,
        sim_prefill_tps=args.sim_prefill_tps,
        device=args.device,
    )
    try:
        ctx = build_context(args.name, specs, settings, args.max_body_bytes)
    except ValueError as exc:
        log.error("bad configuration", extra={"fields": {"error": str(exc)}})
        return 2
    from node.server import serve

    host, port = args.listen
    return asyncio.run(serve(ctx, host, port))
