"""Run benchmark parts and assemble BENCHMARKS.md from their result files.

    .venv/bin/python -m benchmarks                 # every part, then BENCHMARKS.md
    .venv/bin/python -m benchmarks payments gas    # some parts, then BENCHMARKS.md
    .venv/bin/python -m benchmarks --report-only   # just re-assemble BENCHMARKS.md

Each part runs as its own process (``python -m benchmarks.<part>``) and writes
``benchmarks/results/<part>.md`` (with its raw numbers in ``<part>.json`` and its plots
as ``<part>_*.png``, where it has them); every number in BENCHMARKS.md comes from one of
them. If a part fails, the run stops there and BENCHMARKS.md is left as it was.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PARTS = {  # part -> section title, in report order
    "operator_node": "Operator node vs the model served directly",
    "payments": "Payment checks",
    "router": "Router (gateway) overhead, beside LiteLLM",
    "gas": "Gas per settled request",
    "market": "Scale of the market",
}


def run(parts: list[str]) -> None:
    """Run each part in its own process; stop at the first that fails, leaving
    BENCHMARKS.md as it was."""
    for k, part in enumerate(parts):
        print(f"== benchmarks.{part}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", f"benchmarks.{part}"], cwd=ROOT).returncode
        took = time.monotonic() - started
        if code != 0:
            sys.exit(
                f"benchmarks.{part} failed (exit status {code}) after {took:.0f} s; "
                "BENCHMARKS.md was not rewritten. Parts that finished before it have "
                "written benchmarks/results/; fix the failure and go on with "
                f"`.venv/bin/python -m benchmarks {' '.join(parts[k:])}`."
            )
        print(f"== benchmarks.{part}: {took:.0f} s", flush=True)


def assemble() -> str:
    with open("/proc/meminfo") as fh:
        mem_gib = int(fh.readline().split()[1]) / 1024 / 1024
    out = [
        "# Benchmarks",
        "",
        "Every table below was written by the command named in it; "
        "`.venv/bin/python -m benchmarks` re-runs all of them and rebuilds this file "
        "(`--report-only` rebuilds it from the saved results). Machine: "
        f"{os.cpu_count()} cores, {mem_gib:.1f} GiB, {platform.machine()}, "
        f"Python {platform.python_version()}. This machine is shared and noisy: compare "
        "rows of one table (measured side by side in one run), quote medians and ratios.",
        "",
    ]
    for part, title in PARTS.items():
        path = RESULTS / f"{part}.md"
        out += [f"## {title}", ""]
        if path.exists():
            body = path.read_text().strip().splitlines()
            if body and body[0].startswith("#"):
                body = body[1:]  # the part's own title
            out += [("#" + line if line.startswith("## ") else line) for line in body] + [""]
            for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", path.read_text()):
                if not (ROOT / image).exists():
                    print(f"warning: {path.name} shows {image}, which does not exist")
        else:
            out += [f"Not measured yet: run `.venv/bin/python -m benchmarks {part}`.", ""]
    notes = ROOT / "benchmarks" / "notes.md"
    if notes.exists():
        out += [notes.read_text().strip(), ""]
    out.append(f"_Assembled {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC._")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", help=f"any of: {', '.join(PARTS)}")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(PARTS)}")
    if not args.report_only:
        run(args.parts or list(PARTS))
    (ROOT / "BENCHMARKS.md").write_text(assemble())
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
