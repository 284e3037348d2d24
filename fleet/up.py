"""``fleet up``: a whole local fleet in the foreground until Ctrl-C / SIGTERM.

Control plane, N nodes each with its sidecar, and Envoy, all on loopback. The console
shows only progress and the ready banner; every child logs to a file under the workdir.
Planning lives in ``fleet.plan`` (pure), process handling in ``fleet.supervisor``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ruamel.yaml import YAML, YAMLError

from fleet import logs
from fleet.envoybin import find_envoy
from fleet.plan import (
    EMBEDDED_MODEL,
    ModelSpec,
    NodeLimits,
    Plan,
    PlanError,
    Ports,
    listener_of,
    make_plan,
)
from fleet.readiness import Progress, fetch_health, probe_chat
from fleet.supervisor import Exit, Supervisor

log = logging.getLogger("fleet.up")
_D = Ports()


def _model(text: str) -> ModelSpec:
    try:
        return ModelSpec.parse(text)
    except PlanError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fleet up",
        description="Start a local fleet (control plane, nodes + sidecars, Envoy) in the "
        "foreground, serving an OpenAI-compatible API through Envoy. Ctrl-C stops it all.",
    )
    p.add_argument("--config", type=Path, help="operator config (default: generated in workdir)")
    p.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    p.add_argument(
        "--model",
        action="append",
        type=_model,
        default=[],
        metavar="ID[=SOURCE]",
        help=f"model every node serves; SOURCE sim, embedded or a path (default {EMBEDDED_MODEL})",
    )
    p.add_argument("--max-in-flight", type=int, help="per model per node (node default)")
    p.add_argument("--max-queue-depth", type=int, help="per model per node (node default)")
    p.add_argument("--max-wait-s", type=float, help="longest queue wait (node default)")
    p.add_argument("--sim-decode-tps", type=float, help="sim models' decode tokens/s")
    p.add_argument("--sim-prefill-tps", type=float, help="sim models' prefill tokens/s")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="node device (node default)")
    p.add_argument("--port", type=int, default=_D.envoy, help="Envoy's public port (8080)")
    p.add_argument("--admin-port", type=int, default=_D.admin, help="Envoy admin port (9901)")
    p.add_argument("--xds-port", type=int, default=_D.xds, help="control plane gRPC (18000)")
    p.add_argument(
        "--control-http-port", type=int, default=_D.control_http, help="control HTTP (18080)"
    )
    p.add_argument("--node-port-base", type=int, default=_D.node_base, help="first node (8101)")
    p.add_argument(
        "--sidecar-port-base", type=int, default=_D.sidecar_base, help="first sidecar (9101)"
    )
    p.add_argument("--workdir", type=Path, default=Path(".fleet"), help="files and logs (.fleet)")
    p.add_argument(
        "--ready-timeout-s",
        type=float,
        default=900.0,
        help="give up if not ready after this long (default 900)",
    )
    logs.add_arguments(p)
    return p


def _say(text: str) -> None:
    """Console line for the person at the terminal (logs go to files)."""
    print(f"fleet up: {text}", flush=True)


def _read_config_listener(path: Path) -> tuple[str | None, int | None]:
    try:
        data = YAML(typ="safe").load(path.read_text())
    except (OSError, YAMLError) as exc:
        raise PlanError(f"cannot read --config {path}: {exc}") from None
    return listener_of(data)


def plan_from_args(args: argparse.Namespace, envoy: str) -> Plan:
    port = args.port
    if args.config is not None:
        address, config_port = _read_config_listener(args.config)
        if address not in (None, "127.0.0.1", "0.0.0.0", "localhost"):
            raise PlanError(f"{args.config}: listener.address {address!r} is not local")
        if config_port is not None:
            if port not in (_D.envoy, config_port):
                raise PlanError(
                    f"--port {port} disagrees with listener.port {config_port} in {args.config}"
                )
            port = config_port
    log_args = [f"--log-{k}={v}" for k, v in (("level", args.log_level),) if v]
    log_args += [f"--log-format={args.log_format}"] if args.log_format else []
    return make_plan(
        python=sys.executable,
        envoy=envoy,
        nodes=args.nodes,
        models=args.model,
        ports=Ports(
            envoy=port,
            admin=args.admin_port,
            xds=args.xds_port,
            control_http=args.control_http_port,
            node_base=args.node_port_base,
            sidecar_base=args.sidecar_port_base,
        ),
        workdir=args.workdir,
        limits=NodeLimits(
            max_in_flight=args.max_in_flight,
            max_queue_depth=args.max_queue_depth,
            max_wait_s=args.max_wait_s,
            sim_decode_tps=args.sim_decode_tps,
            sim_prefill_tps=args.sim_prefill_tps,
            device=args.device,
        ),
        config_file=args.config,
        log_args=log_args,
    )


def busy_ports(plan: Plan) -> list[str]:
    """Ports someone else holds; starting anyway would end in a confusing child crash."""
    busy = []
    for port, owner in plan.all_ports():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((plan.host, port))
            except OSError:
                busy.append(f"{port} ({owner})")
    return busy


def write_files(plan: Plan) -> None:
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    if plan.config is not None:
        buf = io.StringIO()
        yaml = YAML()
        yaml.default_flow_style = False
        yaml.dump(plan.config, buf)
        plan.config_path.write_text(
            "# Generated by `fleet up` from its --model flags; pass --config to use your own.\n"
            + buf.getvalue()
        )
    plan.bootstrap_path.write_text(json.dumps(plan.bootstrap, indent=2) + "\n")


def write_state(plan: Plan, sup: Supervisor) -> None:
    """workdir/children.json: who runs where, for operators and tests."""
    pids = sup.pids()
    state = {
        "endpoint": plan.endpoint,
        "children": [
            {
                "name": c.name,
                "kind": c.kind,
                "pid": pids.get(c.name),
                "ports": list(c.ports),
                "log": str(c.log),
                "url": c.url,
            }
            for c in plan.children
        ],
    }
    tmp = plan.workdir / "children.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(plan.workdir / "children.json")


def banner(plan: Plan, elapsed_s: float) -> str:
    model = plan.models[0].id
    question = {"role": "user", "content": "What is the capital of France?"}
    body = json.dumps({"model": model, "messages": [question]})
    return "\n".join(
        [
            f"fleet up: ready in {elapsed_s:.1f} s — OpenAI endpoint {plan.endpoint}",
            f"  models: {', '.join(m.id for m in plan.models)}",
            "  try it:",
            f"    curl -s {plan.endpoint}/chat/completions -H 'content-type: application/json' \\",
            f"      -d '{body}'",
            f'    python -c \'from openai import OpenAI; c = OpenAI(base_url="{plan.endpoint}", '
            'api_key="unused"); print(c.chat.completions.create(model="'
            + model
            + '", messages=[{"role": "user", "content": "What is the capital of France?"}])'
            ".choices[0].message.content)'",
            f"  Envoy admin http://{plan.host}:{plan.ports.admin}  control plane "
            f"http://{plan.host}:{plan.ports.control_http}/snapshot  logs {plan.log_dir}/",
            "  Ctrl-C stops the fleet.",
        ]
    )


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(f"    | {line}" for line in text)


class _Signals:
    """SIGINT/SIGTERM: the first asks for a clean stop, a second one hurries it."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hurry = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        (self.hurry if self.stop.is_set() else self.stop).set()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self)


def run(plan: Plan, ready_timeout_s: float) -> int:
    signals = _Signals()
    signals.install()
    sup = Supervisor(plan.children)
    nodes = plan.of_kind("node")
    progress = Progress(tuple(m.id for m in plan.models))
    t0 = time.monotonic()
    _say(
        f"starting control plane, {len(nodes)} node(s) with sidecars and Envoy; "
        f"logs in {plan.log_dir}/"
    )
    sup.start_all()
    write_state(plan, sup)
    pids = sup.pids()
    ready_at: float | None = None
    next_health = 0.0
    code = 0
    while not signals.stop.wait(0.1):
        fatal = _handle_exits(sup, sup.poll(), ready=ready_at is not None)
        if sup.pids() != pids:
            pids = sup.pids()
            write_state(plan, sup)
        if fatal is not None:
            code = 1
            break
        now = time.monotonic()
        if now >= next_health:
            next_health = now + (0.25 if ready_at is None else 1.0)
            for node in nodes:
                for line in progress.update(node.name, fetch_health(node.url)):
                    _say(f"{line} (+{time.monotonic() - t0:.1f} s)")
        if ready_at is None:
            failed = progress.failed_everywhere(n.name for n in nodes)
            if failed:
                _say(f"model(s) {', '.join(failed)} failed to load on every node; see node logs")
                code = 1
                break
            if not progress.missing() and all(
                probe_chat(plan.endpoint, m.id, timeout_s=5.0) == 200 for m in plan.models
            ):
                ready_at = time.monotonic()
                print(banner(plan, ready_at - t0), flush=True)
            elif now - t0 > ready_timeout_s:
                _say(f"not ready after {ready_timeout_s:.0f} s; see logs in {plan.log_dir}/")
                code = 1
                break
    _say("stopping: Envoy, sidecars, nodes, control plane")
    sup.stop_all(force=signals.hurry.is_set)
    _say("stopped")
    return code


def _handle_exits(sup: Supervisor, exits: list[Exit], *, ready: bool) -> Exit | None:
    """Report each death; restart what may be restarted; return a death that ends the fleet."""
    for ex in exits:
        _say(ex.describe())
        if not ready or not ex.child.restart:
            tail = _log_tail(ex.child.log)
            if tail:
                print(tail, flush=True)
            return ex
        _say(f"restarting {ex.child.name} in {sup.restart_later(ex.child):.0f} s")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logs.setup(args.log_level, args.log_format)
    try:
        plan = plan_from_args(args, find_envoy())
    except (PlanError, FileNotFoundError) as exc:
        print(f"fleet up: {exc}", file=sys.stderr)
        return 2
    busy = busy_ports(plan)
    if busy:
        print(
            f"fleet up: port(s) already in use: {', '.join(busy)}; stop what holds them "
            "or pick others (--port, --admin-port, --xds-port, --control-http-port, "
            "--node-port-base, --sidecar-port-base)",
            file=sys.stderr,
        )
        return 2
    write_files(plan)
    return run(plan, args.ready_timeout_s)


if __name__ == "__main__":
    sys.exit(main())
