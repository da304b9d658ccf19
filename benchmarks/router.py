"""Gateway overhead: Mercato's router vs the LiteLLM proxy vs the upstream called directly.

One upstream that answers instantly (aiohttp, its own process). Contenders, each one
worker process: Mercato's router (the upstream configured as a hosted provider; auth
off, as LiteLLM runs with only its master key) and the LiteLLM proxy (installed by this
script into benchmarks/.venv-litellm, never a project dependency). One load generator
drives all of them: wrk (Debian's package) with a POST script, non-streaming chat, at
concurrency 1, 16 and 64; rounds alternate between contenders and repeat; tables give
medians with min-max over rounds.

    .venv/bin/python -m benchmarks.router [--rounds 3] [--seconds 5] [--no-litellm]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / "benchmarks" / ".venv-litellm"
LITELLM_SPEC = "litellm[proxy]==1.106.*"
MASTER_KEY = "sk-bench-master"
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16})
ANSWER = json.dumps(
    {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
)
UPSTREAM = f"""
import sys
from aiohttp import web
ANSWER = {ANSWER!r}.encode()
async def chat(_):
    return web.Response(body=ANSWER, content_type="application/json")
async def models(_):
    return web.json_response({{"object": "list", "data": [{{"id": "m", "object": "model"}}]}})
app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
app.router.add_get("/v1/models", models)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not start")


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, LITELLM_SPEC], check=True)
    return binary


def ms(value: str) -> float:
    number, unit = float(re.match(r"[\d.]+", value).group()), value.lstrip("0123456789.")  # type: ignore[union-attr]
    return number * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, concurrency: int, seconds: float, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "errors": float(errors.group(1)) if errors else 0}


def fmt(values: list[float], digits: int = 2) -> str:
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "router.md")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="mercato-gw-"))
    up, mer, lit = free_port(), free_port(), free_port()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    targets = {
        "direct": f"http://127.0.0.1:{up}/v1/chat/completions",
        "mercato": f"http://127.0.0.1:{mer}/v1/chat/completions",
    }
    try:
        procs["upstream"] = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up)], **quiet)  # type: ignore[call-overload]
        (tmp / "router.toml").write_text(
            f'[router]\nport = {mer}\ndata_dir = "{tmp}"\nlog_level = "warning"\n'
            '[router.billing]\nauth = "off"\nadmin_token = "bench"\n'
            f'[[router.providers]]\nname = "instant"\nbase_url = "http://127.0.0.1:{up}/v1"\n'
            'models = ["m"]\nprice_in_per_m = 1\nprice_out_per_m = 1\n'
        )
        procs["mercato"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mercato.cli.main",
                "router",
                "serve",
                "--config",
                str(tmp / "router.toml"),
            ],
            **quiet,  # type: ignore[call-overload]
        )
        if not args.no_litellm:
            (tmp / "litellm.yaml").write_text(
                "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n"
                f"      api_base: http://127.0.0.1:{up}/v1\n      api_key: unused\n"
            )
            env = {
                **os.environ,
                "LITELLM_MASTER_KEY": MASTER_KEY,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
            }
            procs["litellm"] = subprocess.Popen(
                [
                    str(ensure_litellm()),
                    "--config",
                    str(tmp / "litellm.yaml"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(lit),
                    "--num_workers",
                    "1",
                ],
                env=env,
                **quiet,  # type: ignore[call-overload]
            )
            targets["litellm"] = f"http://127.0.0.1:{lit}/v1/chat/completions"
        wait_up(f"http://127.0.0.1:{up}/v1/models")
        wait_up(f"http://127.0.0.1:{mer}/health")
        if "litellm" in targets:
            wait_up(f"http://127.0.0.1:{lit}/health/liveliness", timeout=300)
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT.format(body=json.dumps(BODY), key=MASTER_KEY))
        for url in targets.values():  # warm-up
            wrk(url, 4, 2, script)
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for conc in (1, 16, 64):
                for name, url in targets.items():
                    r = wrk(url, conc, args.seconds, script)
                    results.setdefault((name, conc), []).append(r)
                    print(
                        f"{name:8} c={conc:<3} {r['rps']:8.0f} req/s  p50 {r['p50']:8.2f} ms  "
                        f"p99 {r['p99']:8.2f} ms  errors {r['errors']:.0f}",
                        flush=True,
                    )
    finally:
        for p in procs.values():
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            p.wait(30)
    write_report(args, results, targets)


def write_report(
    args: argparse.Namespace,
    results: dict[tuple[str, int], list[dict[str, float]]],
    targets: dict[str, str],
) -> None:
    med = statistics.median
    lines = [
        "### Gateway overhead against an instant upstream",
        "",
        f"Command: `.venv/bin/python -m benchmarks.router --rounds {args.rounds} --seconds "
        f"{args.seconds:g}`. {os.cpu_count()} cores, {dt.date.today().isoformat()}; wrk -t1, "
        "non-streaming chat; every contender one worker process on the same 2 cores as the "
        "upstream and wrk. Median (min-max) over rounds.",
        "",
        "| target | concurrency | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for conc in (1, 16, 64):
        d = results[("direct", conc)]
        for name in targets:
            rs = results[(name, conc)]
            added = (
                ""
                if name == "direct"
                else (
                    f"{med(r['p50'] for r in rs) - med(r['p50'] for r in d):.2f} | "
                    f"{med(r['p99'] for r in rs) - med(r['p99'] for r in d):.2f}"
                )
            )
            lines.append(
                f"| {name} | {conc} | {fmt([r['rps'] for r in rs], 0)} | "
                f"{fmt([r['p50'] for r in rs])} | {fmt([r['p99'] for r in rs])} | "
                + (added or " | ")
                + " |"
            )
    lines.append("")
    d1 = med(r["p50"] for r in results[("direct", 1)])
    m1 = med(r["p50"] for r in results[("mercato", 1)])
    lines.append(
        f"- Mercato adds {m1 - d1:.2f} ms at p50, concurrency 1 (goal <= 1 ms: "
        f"{'met' if m1 - d1 <= 1 else 'NOT met'})."
    )
    if ("litellm", 64) in results:
        mr = med(r["rps"] for r in results[("mercato", 64)])
        lr = med(r["rps"] for r in results[("litellm", 64)])
        dp = med(r["p99"] for r in results[("direct", 64)])
        mp = med(r["p99"] for r in results[("mercato", 64)]) - dp
        lp = med(r["p99"] for r in results[("litellm", 64)]) - dp
        lines.append(
            f"- Concurrency 64: Mercato {mr:.0f} req/s = {mr / lr:.1f}x LiteLLM's {lr:.0f} "
            f"(goal >= 10x: {'met' if mr >= 10 * lr else 'NOT met'}); added p99 {mp:.1f} ms "
            f"vs LiteLLM's {lp:.1f} ms = {mp / lp:.2f} (goal <= 0.10: "
            f"{'met' if mp <= 0.1 * lp else 'NOT met'})."
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
