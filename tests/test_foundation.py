"""The foundation a newcomer relies on: the CLI, CI wiring, and the checked-in stubs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fleet.addr import parse_hostport
from fleet.logs import redact
from fleet.proto import generate
from tests.procs import REPO


def test_fleet_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("up", "node", "sidecar", "control", "config"):
        assert f"  {command} " in out


def test_unknown_command_fails_with_usage() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "frobnicate"], capture_output=True, text=True
    )
    assert res.returncode == 2
    assert "unknown command 'frobnicate'" in res.stderr


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make up" in readme and "make test" in readme


def test_checked_in_proto_stubs_match_load_proto(tmp_path: Path) -> None:
    generate.generate(tmp_path)
    for name in generate.OUTPUTS:
        assert (tmp_path / name).read_text() == (generate.HERE / name).read_text(), (
            f"fleet/proto/{name} is stale: run `make proto`"
        )


def test_hostport_parsing() -> None:
    assert parse_hostport("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_hostport(":9") == ("127.0.0.1", 9)
    assert parse_hostport("[::1]:80") == ("::1", 80)
    for bad in ("nohost", "h:x", "h:70000"):
        try:
            parse_hostport(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_redact_masks_secrets() -> None:
    assert redact({"api_key": "sk-123", "model": "m"}) == {"api_key": "***", "model": "m"}
