"""``fleet config validate|render FILE``: check an operator file before it goes live.

``validate`` exits 1 with the same ``FILE:LINE: field: message`` lines the control plane
logs when it refuses a hot reload; ``render`` prints the Envoy resources the file
produces for a fleet of only its static nodes, in ADS order, as the type URL, the
resource name and the resource in Envoy's own field names.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from ruamel.yaml import YAML

from fleet import logs
from xds_control.config import ConfigError, FleetConfig, load_config
from xds_control.fleet_state import FleetState
from xds_control.snapshot import ALL_TYPES, build_snapshot


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet config", description="Validate or render an operator config file."
    )
    logs.add_arguments(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="{validate,render}")
    validate = sub.add_parser("validate", help="check the file; exit 1 naming line and field")
    validate.add_argument("file", metavar="FILE")
    render = sub.add_parser("render", help="print the Envoy resources the file produces")
    render.add_argument("file", metavar="FILE")
    render.add_argument(
        "--format", choices=["yaml", "json"], default="yaml", help="output format (default yaml)"
    )
    return parser


def rendered(config: FleetConfig) -> list[dict[str, Any]]:
    """Every resource for an empty fleet (static nodes only), JSON-ready, in ADS order."""
    snapshot = build_snapshot(config, FleetState())
    return [
        {
            "type_url": type_url,
            "name": name,
            # via JSON text: MessageToDict nests OrderedDicts (Any), which YAML would tag
            "resource": json.loads(
                json_format.MessageToJson(message, preserving_proto_field_name=True)
            ),
        }
        for type_url in ALL_TYPES
        for name, message in sorted(snapshot.resources[type_url].items())
    ]


def _dump(resources: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"resources": resources}, indent=2) + "\n"
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096  # keep long type URLs on one line
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    out = io.StringIO()
    yaml.dump({"resources": resources}, out)
    return out.getvalue()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    logs.setup(args.log_level, args.log_format)
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.action == "validate":
        counts = [
            _count(len(config.models), "model"),
            _count(len(config.nodes), "static node"),
            _count(len(config.api_keys), "API key"),
        ]
        print(f"{args.file}: OK ({', '.join(counts)})")
        return 0
    sys.stdout.write(_dump(rendered(config), args.format))
    return 0
