"""What ``fleet up`` will start, decided before anything runs: ports, argv, generated files.

Pure: no process is started and no file is written here, so every choice (ports, flags,
the operator config and the Envoy bootstrap) is unit-testable. ``fleet.up`` writes the
files and hands the children to ``fleet.supervisor``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from xds_control.bootstrap import render_bootstrap

EMBEDDED_MODEL = "smollm2-135m-instruct"
ENVOY_NODE_ID = "fleet-envoy"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")

Kind = Literal["control", "node", "sidecar", "envoy"]


class PlanError(ValueError):
    """A command line that cannot describe a fleet (bad model, port clash, ...)."""


@dataclass(frozen=True)
class ModelSpec:
    """One ``--model ID[=SOURCE]``; SOURCE is ``sim``, ``embedded`` or a path (node's rules)."""

    id: str
    source: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        model_id, sep, source = text.partition("=")
        model_id = model_id.strip()
        if not _MODEL_ID.match(model_id):
            raise PlanError(f"bad model id in --model {text!r} (expected ID or ID=SOURCE)")
        if sep and not source.strip():
            raise PlanError(f"empty SOURCE in --model {text!r} (use sim, embedded or a path)")
        return cls(model_id, source.strip() if sep else None)

    def arg(self) -> str:
        return self.id if self.source is None else f"{self.id}={self.source}"


@dataclass(frozen=True)
class Ports:
    """Every port a local fleet binds (the defaults are ARCHITECTURE.md's)."""

    envoy: int = 8080
    admin: int = 9901
    xds: int = 18000
    control_http: int = 18080
    node_base: int = 8101
    sidecar_base: int = 9101

    def node(self, index: int) -> int:
        return self.node_base + index

    def sidecar(self, index: int) -> int:
        return self.sidecar_base + index


@dataclass(frozen=True)
class NodeLimits:
    """Admission and simulator flags passed to every node unchanged (None: node default)."""

    max_in_flight: int | None = None
    max_queue_depth: int | None = None
    max_wait_s: float | None = None
    sim_decode_tps: float | None = None
    sim_prefill_tps: float | None = None
    device: str | None = None

    def argv(self) -> list[str]:
        out: list[str] = []
        for flag, value in (
            ("--max-in-flight", self.max_in_flight),
            ("--max-queue-depth", self.max_queue_depth),
            ("--max-wait-s", self.max_wait_s),
            ("--sim-decode-tps", self.sim_decode_tps),
            ("--sim-prefill-tps", self.sim_prefill_tps),
            ("--device", self.device),
        ):
            if value is not None:
                out += [flag, _num(value)]
        return out


def _num(value: object) -> str:
    """``2.0`` -> ``2`` so argv reads like what a person would type."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Child:
    """One process of the fleet, how to start it and whether to bring it back if it dies."""

    name: str
    kind: Kind
    argv: tuple[str, ...]
    log: Path
    ports: tuple[int, ...]
    restart: bool
    url: str = ""  # the child's HTTP base URL, where it has one worth probing


@dataclass(frozen=True)
class Plan:
    """A whole local fleet: the children in start order plus the files to write first."""

    children: tuple[Child, ...]
    models: tuple[ModelSpec, ...]
    ports: Ports
    host: str
    workdir: Path
    config_path: Path
    config: dict[str, Any] | None  # None: the operator's own --config file is used as is
    bootstrap_path: Path
    bootstrap: dict[str, Any]
    log_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "log_dir", self.workdir / "logs")

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.ports.envoy}/v1"

    def of_kind(self, kind: Kind) -> list[Child]:
        return [c for c in self.children if c.kind == kind]

    def all_ports(self) -> list[tuple[int, str]]:
        """(port, owner) for every port the fleet binds, for a clash check before starting."""
        return [(p, c.name) for c in self.children for p in c.ports]


def operator_config(models: Sequence[ModelSpec], host: str, port: int) -> dict[str, Any]:
    """The config ``fleet up`` generates when no ``--config`` is given: a listener, the models."""
    return {
        "listener": {"address": host, "port": port},
        "models": [{"id": m.id} for m in models],
    }


def listener_of(config: Any) -> tuple[str | None, int | None]:
    """The (address, port) an operator config puts Envoy's public listener on, if it says."""
    if not isinstance(config, dict):
        return None, None
    listener = config.get("listener")
    if not isinstance(listener, dict):
        return None, None
    address, port = listener.get("address"), listener.get("port")
    return (
        address if isinstance(address, str) else None,
        port if isinstance(port, int) else None,
    )


def _unique_models(models: Sequence[ModelSpec]) -> tuple[ModelSpec, ...]:
    seen: dict[str, ModelSpec] = {}
    for m in models:
        if m.id in seen and seen[m.id] != m:
            raise PlanError(f"model {m.id!r} given twice with different sources")
        seen[m.id] = m
    return tuple(seen.values())


def make_plan(
    *,
    python: str,
    envoy: str,
    nodes: int,
    models: Sequence[ModelSpec],
    ports: Ports,
    workdir: Path,
    limits: NodeLimits = NodeLimits(),
    host: str = "127.0.0.1",
    config_file: Path | None = None,
    log_args: Sequence[str] = (),
) -> Plan:
    """Every child of a local fleet, in start order: control plane, nodes, sidecars, Envoy."""
    if nodes < 1:
        raise PlanError(f"--nodes must be at least 1, got {nodes}")
    unique = _unique_models(models or [ModelSpec(EMBEDDED_MODEL, "embedded")])
    log_dir = workdir / "logs"
    fleet = (python, "-m", "fleet.cli")
    logs = tuple(log_args)
    config_path = config_file if config_file is not None else workdir / "fleet.yaml"
    children: list[Child] = [
        Child(
            name="control",
            kind="control",
            argv=(
                *fleet,
                "control",
                "--config",
                str(config_path),
                "--xds",
                f"{host}:{ports.xds}",
                "--http",
                f"{host}:{ports.control_http}",
                *logs,
            ),
            log=log_dir / "control.log",
            ports=(ports.xds, ports.control_http),
            restart=True,
            url=f"http://{host}:{ports.control_http}",
        )
    ]
    model_args = [a for m in unique for a in ("--model", m.arg())]
    for i in range(nodes):
        name, port = f"node-{i + 1}", ports.node(i)
        children.append(
            Child(
                name=name,
                kind="node",
                argv=(
                    *fleet,
                    "node",
                    "--name",
                    name,
                    "--listen",
                    f"{host}:{port}",
                    *model_args,
                    *limits.argv(),
                    *logs,
                ),
                log=log_dir / f"{name}.log",
                ports=(port,),
                restart=True,
                url=f"http://{host}:{port}",
            )
        )
    for i in range(nodes):
        name, port, node_port = f"sidecar-{i + 1}", ports.sidecar(i), ports.node(i)
        children.append(
            Child(
                name=name,
                kind="sidecar",
                argv=(
                    *fleet,
                    "sidecar",
                    "--node",
                    f"http://{host}:{node_port}",
                    "--listen",
                    f"{host}:{port}",
                    "--control",
                    f"{host}:{ports.xds}",
                    "--advertise",
                    f"{host}:{node_port}",
                    "--name",
                    f"node-{i + 1}",
                    *logs,
                ),
                log=log_dir / f"{name}.log",
                ports=(port,),
                restart=True,
                url=f"http://{host}:{port}",
            )
        )
    bootstrap_path = workdir / "envoy-bootstrap.json"
    children.append(
        Child(
            name="envoy",
            kind="envoy",
            argv=(
                envoy,
                "-c",
                str(bootstrap_path),
                # Two fleets (or a test beside a demo) must not share hot-restart memory.
                "--use-dynamic-base-id",
                "--log-level",
                "warn",
            ),
            log=log_dir / "envoy.log",
            ports=(ports.envoy, ports.admin),
            restart=False,
            url=f"http://{host}:{ports.admin}",
        )
    )
    plan = Plan(
        children=tuple(children),
        models=unique,
        ports=ports,
        host=host,
        workdir=workdir,
        config_path=config_path,
        config=None if config_file is not None else operator_config(unique, host, ports.envoy),
        bootstrap_path=bootstrap_path,
        bootstrap=render_bootstrap(
            xds_host=host,
            xds_port=ports.xds,
            admin_host=host,
            admin_port=ports.admin,
            node_id=ENVOY_NODE_ID,
        ),
    )
    _check_ports(plan)
    return plan


def _check_ports(plan: Plan) -> None:
    owners: dict[int, str] = {}
    for port, owner in plan.all_ports():
        if not 1 <= port <= 65535:
            raise PlanError(f"port {port} of {owner} is out of range 1-65535")
        if port in owners:
            raise PlanError(f"port {port} is given to both {owners[port]} and {owner}")
        owners[port] = owner
