"""Router overhead against an upstream that answers instantly (not a test: a benchmark).

Starts an instant OpenAI-compatible upstream (aiohttp, own process), a router
(``mercato router serve``, own process) with that upstream as a hosted provider, and a
load generator (aiohttp, own process), then measures requests/s and p50/p99 latency at
concurrency 1, 16 and 64, for the upstream called directly and through the router, in
the same run. ``--billing`` adds API-key auth, holds and durable captures.

    .venv/bin/python -m tests.integration.router.bench_overhead [--seconds 5] [--billing]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "max_tokens": 16}).encode()  # fmt: skip
ANSWER = json.dumps({"id": "x", "object": "chat.completion", "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()  # fmt: skip

UPSTREAM = f"""
import sys
from aiohttp import web
ANSWER = {ANSWER!r}
async def chat(_):
    return web.Response(body=ANSWER, content_type="application/json")
app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

LOAD = """
import asyncio, json, sys, time
import aiohttp
url, conc, secs, token = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
body = BODY_PLACEHOLDER
async def main():
    lat, errors = [], 0
    headers = {"Content-Type": "application/json"}
    if token != "-":
        headers["Authorization"] = "Bearer " + token
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn, headers=headers) as s:
        end = time.perf_counter() + secs
        async def worker():
            nonlocal errors
            while time.perf_counter() < end:
                t = time.perf_counter()
                async with s.post(url, data=body) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                lat.append(time.perf_counter() - t)
        await asyncio.gather(*(worker() for _ in range(conc)))
    print(json.dumps({"n": len(lat), "errors": errors, "secs": secs, "lat": sorted(lat)}))
asyncio.run(main())
""".replace("BODY_PLACEHOLDER", repr(BODY))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def load(url: str, conc: int, secs: float, token: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", LOAD, url, str(conc), str(secs), token],
                         capture_output=True, check=True, text=True).stdout  # fmt: skip
    doc = json.loads(out)
    lat = doc["lat"]
    return {"rps": doc["n"] / doc["secs"], "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000, "errors": doc["errors"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--billing", action="store_true")
    args = ap.parse_args()
    up_port, r_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp())
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)])
    config = tmp / "router.toml"
    auth = "required" if args.billing else "off"
    config.write_text(
        f'[router]\nport = {r_port}\ndata_dir = "{tmp}"\n[router.billing]\nauth = "{auth}"\n'
        'admin_token = "bench"\n[[router.providers]]\nname = "instant"\n'
        f'base_url = "http://127.0.0.1:{up_port}/v1"\nmodels = ["m"]\n'
        "price_in_per_m = 1\nprice_out_per_m = 1\n"
    )
    router = subprocess.Popen(
        [sys.executable, "-m", "mercato.cli.main", "router", "serve", "--config", str(config)],
        env={**os.environ, "MERCATO_ROUTER__LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait(f"http://127.0.0.1:{r_port}/health")
        wait(f"http://127.0.0.1:{up_port}/")
        token = "-"
        if args.billing:
            token = httpx.post(f"http://127.0.0.1:{r_port}/admin/keys",
                               json={"credits": 10**12},
                               headers={"Authorization": "Bearer bench"}).json()["key"]  # fmt: skip
        direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        routed = f"http://127.0.0.1:{r_port}/v1/chat/completions"
        load(routed, 4, 1.0, token)  # warm-up
        print(
            "| concurrency | direct req/s | direct p50 / p99 ms | router req/s | "
            "router p50 / p99 ms | added p50 / p99 ms |\n|---|---|---|---|---|---|"
        )
        for conc in (1, 16, 64):
            d = load(direct, conc, args.seconds, "-")
            r = load(routed, conc, args.seconds, token)
            print(
                f"| {conc} | {d['rps']:.0f} | {d['p50_ms']:.2f} / {d['p99_ms']:.2f} | "
                f"{r['rps']:.0f} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | "
                f"{r['p50_ms'] - d['p50_ms']:.2f} / {r['p99_ms'] - d['p99_ms']:.2f} |"
                + (f" errors {r['errors']}" if r["errors"] else ""),
                flush=True,
            )
    finally:
        router.terminate()
        upstream.terminate()
        router.wait()
        upstream.wait()


if __name__ == "__main__":
    main()
