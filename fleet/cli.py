"""The ``fleet`` command: one subcommand per process, each owned by its package.

Each package parses its own flags (``node.cli``, ``sidecar.cli``, ``xds_control.cli``,
``fleet.up``), so this module only dispatches and imports lazily: ``fleet config
validate`` must not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "up": ("fleet.up", "main", "start a whole local fleet in the foreground"),
    "node": ("node.cli", "main", "run one inference node"),
    "sidecar": ("sidecar.cli", "main", "run one node's load sidecar"),
    "control": ("xds_control.cli", "main", "run the xDS control plane"),
    "config": ("xds_control.config_cli", "main", "validate or render an operator config"),
}


def usage() -> str:
    lines = ["usage: fleet COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run `fleet COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        from fleet import __version__

        print(f"envoy-llm-fleet {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"fleet: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = command
    func: Callable[[list[str]], int | None] = getattr(
        importlib.import_module(module_name), func_name
    )
    return func(args[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
