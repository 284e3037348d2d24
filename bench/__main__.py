"""``python -m bench [--full] [--only NAME]``: run the benchmark suites, write bench/results/.

The default run is sized for a shared 2-core machine (about 12 minutes); ``--full`` runs the
sizes the issue asks for (longer traces, 1,000 endpoints and 50 ADS streams). Suites
written by other packages are run when present, through their ``main(argv)``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
import time
import traceback
from pathlib import Path

from bench.common import RESULTS, Stopped, stop_on_signals

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
# Result files shown in docs/benchmarks.md, in this order (those present).
SHOWN = (
    "routing",
    "propagation_chain",
    "control_propagation",
    "proxy_overhead",
    "scale",
    "node_overhead",
    "sidecar_latency",
)

# name -> (module, default argv, --full argv)
SUITES: dict[str, tuple[str, list[str], list[str]]] = {
    "routing": ("bench.routing", ["--duration", "30"], ["--duration", "120"]),
    "propagation": (
        "bench.control_propagation",
        ["--changes", "50"],
        ["--changes", "300", "--burst", "500"],
    ),
    "proxy_overhead": ("bench.proxy_overhead", ["--requests", "300"], ["--requests", "2000"]),
    "scale": (
        "bench.scale",
        ["--endpoints", "50,200,600,1000", "--streams", "10", "--seconds", "8"],
        ["--endpoints", "200,500,1000,1500", "--streams", "50", "--seconds", "30"],
    ),
    "node_overhead": ("bench.node_overhead", [], []),
    "sidecar_latency": ("bench.sidecar_latency", [], []),
}


def run_suite(name: str, full: bool) -> str:
    """Run one suite; returns "ok", "skipped (...)" or "failed (...)"."""
    module_name, default, big = SUITES[name]
    if importlib.util.find_spec(module_name) is None:
        return "skipped (not in the tree)"
    module = importlib.import_module(module_name)
    entry = getattr(module, "main", None)
    if entry is None:
        return "skipped (no main())"
    argv = big if full else default
    saved = sys.argv
    sys.argv = [module_name.replace(".", "/") + ".py", *argv]  # result files record it
    try:
        code = entry(argv)
    except Stopped:
        raise
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:
        traceback.print_exc()
        return f"failed ({type(exc).__name__}: {exc})"
    finally:
        sys.argv = saved
    return "ok" if code in (0, None) else f"failed (exit {code})"


def update_docs() -> None:
    """Replace the generated block of docs/benchmarks.md with the latest result tables."""
    if not DOCS.exists() or BEGIN not in DOCS.read_text():
        return
    parts = []
    for name in SHOWN:
        md = RESULTS / f"{name}.md"
        if not md.exists():
            continue
        text = md.read_text().strip()
        text = re.sub(r"^(#+) ", r"\1## ", text, flags=re.MULTILINE)  # nest under the page
        if (RESULTS / f"{name}.png").exists():
            text += f"\n\n![{name}](../bench/results/{name}.png)"
        parts.append(text)
    block = "\n\n".join([BEGIN, *parts, END])
    doc = DOCS.read_text()
    start, end = doc.index(BEGIN), doc.index(END) + len(END)
    DOCS.write_text(doc[:start] + block + doc[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the issue's full sizes (slow)")
    parser.add_argument("--only", choices=sorted(SUITES), action="append", help="repeatable")
    args = parser.parse_args(argv)
    stop_on_signals()
    names = args.only or list(SUITES)
    outcomes = {}
    for name in names:
        t0 = time.monotonic()
        print(f"== {name}", flush=True)
        outcomes[name] = run_suite(name, args.full)
        print(f"== {name}: {outcomes[name]} in {time.monotonic() - t0:.0f} s", flush=True)
    print("\n".join(f"{n}: {o}" for n, o in outcomes.items()))
    update_docs()
    return 1 if any(o.startswith("failed") for o in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
