"""Gateway overhead: Mercato's router vs the LiteLLM proxy vs the upstream called directly,
non-streaming and streaming, routed to a hosted provider and to a Mercato operator node,
with time to first token and memory after a soak.

Contenders (benchmarks/router_setup.py): the instant upstream itself, a Mercato operator
node in front of it, Mercato's router with the upstream as a hosted provider, a router
whose only offer is the operator (receipts verified), and the LiteLLM proxy. Each round,
for each concurrency, every contender in turn gets a wrk run of non-streaming chat, a
wrk run of streamed chat, and a benchmarks.loadgen run of streamed chat for time to
first token; around each wrk run, the CPU time of every process on the request's path is
read from /proc (CPU ms per request). After the rounds, each contender named by ``--soak``
gets ``--soak-seconds`` of wrk at concurrency 16 while its processes' RSS is sampled.
Writes benchmarks/results/router.md, router.json (every raw number, re-rendered by
``--report-only``) and router_*.png.

    .venv/bin/python -m benchmarks.router [--rounds 3] [--seconds 5] [--soak-seconds 600]
        [--soak mercato,litellm] [--no-litellm] [--report-only]

Default run: about 34 minutes on 2 cores (start-up ~1 min, rounds ~12.5 min, two
10-minute soaks: mercato and litellm; add mercato-op to soak the router -> operator path,
which samples both processes, for 10 more minutes).
Smoke test: ``--rounds 1 --seconds 2 --soak-seconds 10``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.router_report import Results, plots, render
from benchmarks.router_setup import (
    BODY,
    CONTENDERS,
    MASTER_KEY,
    PATHS,
    ROOT,
    STREAM_BODY,
    WRK_SCRIPT,
    Fleet,
    cpu_seconds,
    describe_machine,
    loadgen,
    parse_wrk,
    rss_kib,
    wrk,
    wrk_command,
)

Row = dict[str, Any]
SOAK_CONCURRENCY = 16
SOAK_SAMPLES = 30


def command_line(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python -m benchmarks.router", f"--rounds {args.rounds}"]
    parts += [f"--seconds {args.seconds:g}", f"--soak-seconds {args.soak_seconds:g}"]
    if args.ttft_seconds is not None:
        parts.append(f"--ttft-seconds {args.ttft_seconds:g}")
    parts.append(f"--soak {','.join(args.soak) or 'none'}")
    if args.concurrency != [1, 16, 64]:
        parts.append(f"--concurrency {','.join(map(str, args.concurrency))}")
    if args.no_litellm:
        parts.append("--no-litellm")
    return " ".join(parts)


def meta_row(args: argparse.Namespace) -> Row:
    return {
        "kind": "meta",
        "command": command_line(args),
        **describe_machine(),
        "date": dt.date.today().isoformat(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "ttft_seconds": args.ttft_seconds or args.seconds,
        "concurrency": args.concurrency,
        "soak_seconds": args.soak_seconds,
        "soak": [t for t in args.soak if not (args.no_litellm and t == "litellm")],
    }


def run_row(kind: str, mode: str, tool: str, target: str, conc: int, rnd: int) -> Row:
    return {"kind": kind, "mode": mode, "tool": tool, "target": target,
            "concurrency": conc, "round": rnd}  # fmt: skip


def rss_row(process: str, phase: str, target: str | None, t: float, kib: int) -> Row:
    return {"kind": "rss", "process": process, "phase": phase, "soak_target": target,
            "t_s": round(t, 2), "rss_kib": kib}  # fmt: skip


def soak(fleet: Fleet, target: str, seconds: float, script: Path, rows: list[Row]) -> None:
    """wrk at concurrency 16 for ``seconds`` against ``target``, RSS of the processes on
    its path sampled before, SOAK_SAMPLES times during, and after."""
    processes = PATHS[target]

    def sample(phase: str, t: float) -> None:
        for p in processes:
            kib = rss_kib(fleet.pid(p))
            rows.append(rss_row(p, phase, target, t, kib))

    sample("before", 0.0)
    result: dict[str, str] = {}

    def run() -> None:
        import subprocess

        cmd = wrk_command(fleet.urls[target], SOAK_CONCURRENCY, seconds, script)
        result["out"] = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    step = seconds / SOAK_SAMPLES
    for i in range(1, SOAK_SAMPLES):
        time.sleep(max(0.0, started + i * step - time.monotonic()))
        sample("soak", time.monotonic() - started)
    thread.join()
    sample("after", time.monotonic() - started)
    r = parse_wrk(result["out"])
    rows.append(
        {"kind": "soak", "target": target, "concurrency": SOAK_CONCURRENCY, "seconds": seconds} | r
    )
    grown = ", ".join(
        f"{p} {rows[-1 - len(processes) + i]['rss_kib'] / 1024:.1f} MiB"
        for i, p in enumerate(processes)
    )
    print(f"soak {target:10} {r['rps']:8.0f} req/s errors {r['errors']:.0f}; after: {grown}")


def measure(args: argparse.Namespace, rows: list[Row]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mercato-gw-"))
    fleet = Fleet(tmp)
    try:
        fleet.start(litellm=not args.no_litellm)
        print(f"started: {', '.join(fleet.urls)}; operator signs as {fleet.operator_address}")
        for name in fleet.procs:
            rows.append(rss_row(name, "idle", None, 0.0, rss_kib(fleet.pid(name))))
        scripts = {}
        for mode, body in (("json", BODY), ("stream", STREAM_BODY)):
            scripts[mode] = tmp / f"{mode}.lua"
            scripts[mode].write_text(WRK_SCRIPT.format(body=json.dumps(body), key=MASTER_KEY))
        body_file = tmp / "stream.json"
        body_file.write_text(STREAM_BODY)
        ttft_s = args.ttft_seconds if args.ttft_seconds is not None else args.seconds
        for url in fleet.urls.values():  # warm-up
            for script in scripts.values():
                wrk(url, 4, 2, script)
            loadgen(url, 4, 1, body_file)
        for rnd in range(args.rounds):
            for conc in args.concurrency:
                for mode in ("json", "stream"):
                    for name, url in fleet.urls.items():
                        path = (*PATHS[name], "upstream")
                        before = {p: cpu_seconds(fleet.pid(p)) for p in path}
                        r = wrk(url, conc, args.seconds, scripts[mode])
                        used = {p: cpu_seconds(fleet.pid(p)) - before[p] for p in path}
                        cpu = {p: used[p] * 1000 / max(1.0, r["requests"]) for p in path}
                        rows.append(run_row("load", mode, "wrk", name, conc, rnd) | r)
                        rows[-1]["cpu_ms"] = cpu
                        print(
                            f"{mode:6} {name:10} c={conc:<3} {r['rps']:8.0f} req/s  "
                            f"p50 {r['p50']:8.2f} ms  p99 {r['p99']:8.2f} ms  "
                            f"errors {r['errors']:.0f}",
                            flush=True,
                        )
                for name, url in fleet.urls.items():
                    g = loadgen(url, conc, ttft_s, body_file)
                    rows.append(run_row("ttft", "stream", "loadgen", name, conc, rnd) | g)
                    print(
                        f"ttft   {name:10} c={conc:<3} {g['rps']:8.0f} req/s  "
                        f"TTFT p50 {g['ttft_p50']:8.2f} ms  p99 {g['ttft_p99']:8.2f} ms  "
                        f"errors {g['errors']:.0f} {g['error_kinds'] or ''}",
                        flush=True,
                    )
        for target in args.soak:
            if target in fleet.urls:
                soak(fleet, target, args.soak_seconds, scripts["json"], rows)
        crashed = fleet.crashed()
        if crashed:
            print(f"exited during the run: {crashed}", file=sys.stderr)
        rows[0]["crashed"] = crashed
    finally:
        fleet.stop()
    if any(r.get("errors") for r in rows) or rows[0].get("crashed"):
        print(f"errors or exits: the processes' logs are kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="each wrk run")
    ap.add_argument("--ttft-seconds", type=float, help="each loadgen run (default --seconds)")
    ap.add_argument("--soak-seconds", type=float, default=600.0)
    ap.add_argument(
        "--soak",
        type=lambda s: [t for t in s.split(",") if t and t != "none"],
        default=["mercato", "litellm"],
        help=f"contenders to soak, comma-separated, any of {','.join(CONTENDERS)}",
    )
    ap.add_argument(
        "--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16, 64]
    )
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="re-render from router.json")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "router.md")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the fleet on the way out
    json_path = args.out.with_suffix(".json")
    if args.report_only:
        rows = json.loads(json_path.read_text())
    else:
        if shutil.which("wrk") is None:
            sys.exit("wrk is not installed: apt-get install wrk")
        unknown = set(args.soak) - set(CONTENDERS)
        if unknown:
            sys.exit(f"--soak: unknown contenders {sorted(unknown)}")
        rows = [meta_row(args)]
        measure(args, rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=1) + "\n")
    res = Results(rows)
    images = plots(res, args.out.parent)
    text = render(res, images)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
