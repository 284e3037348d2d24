"""Regenerate the checked-in load-report stubs from ``load.proto``.

The generated modules are committed so that installing the project needs no protoc;
``tests/test_proto.py`` regenerates into a temporary folder and fails if they drift.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUTPUTS = ("load_pb2.py", "load_pb2.pyi", "load_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    """Run grpcio-tools' protoc on load.proto, writing the stubs into ``out_dir``."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(HERE / "load.proto"),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on fleet/proto/load.proto")
        for name in OUTPUTS:
            (out_dir / name).write_text((Path(tmp) / "fleet" / "proto" / name).read_text())


if __name__ == "__main__":
    generate(HERE)
    print(f"regenerated {', '.join(OUTPUTS)} in {HERE}", file=sys.stderr)
