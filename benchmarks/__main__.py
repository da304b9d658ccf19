"""Run benchmark parts and assemble BENCHMARKS.md from their result files.

    .venv/bin/python -m benchmarks                 # every part, then BENCHMARKS.md
    .venv/bin/python -m benchmarks payments gas    # some parts, then BENCHMARKS.md
    .venv/bin/python -m benchmarks --report-only   # just re-assemble BENCHMARKS.md

Each part runs as its own process (``python -m benchmarks.<part>``) and writes
``benchmarks/results/<part>.md``; every number in BENCHMARKS.md comes from one of them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
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
    for part in parts:
        print(f"== benchmarks.{part}", flush=True)
        subprocess.run([sys.executable, "-m", f"benchmarks.{part}"], cwd=ROOT, check=True)


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
    if not args.report_only:
        run(args.parts or list(PARTS))
    (ROOT / "BENCHMARKS.md").write_text(assemble())
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
