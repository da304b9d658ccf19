"""Operator node vs the same model served directly by ``llama_cpp.server``.

Both servers load the same GGUF with the same context and thread count and generate
one request at a time (llama.cpp serializes generation in both). A separate client
process sends identical non-streaming chat requests (temperature 0, fixed max_tokens,
so both produce the same tokens) at concurrency 1 and 8; rounds alternate between the
two servers and repeat, and the table gives medians with min-max across rounds.
It also times the signing work the operator adds to each response.

    .venv/bin/python -m benchmarks.operator_node [--rounds 3] [--requests 24] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from benchmarks import plots
from mercato.crypto.keystore import SigningKeys
from mercato.crypto.signers import EcdsaSigner, Ed25519Signer
from mercato.operator.backends.llama_cpp import default_model_path
from mercato.operator.receipts import ReceiptSigner

MODEL = "smollm2-135m-instruct"
PROMPTS = [
    "Explain what a hash function is in two sentences.",
    "Write a haiku about the ocean.",
    "List three uses of copper.",
    "What does a compiler do?",
]
THREADS = 2
N_CTX = 2048


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], path: str) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} never became healthy")


def start_direct(port: int) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_model_path()),
        "--model_alias",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
        "--n_threads",
        str(THREADS),
        "--n_threads_batch",
        str(THREADS),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_operator(port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MERCATO_OPERATOR__SIGNING__FAST_KDF": "true",
        "MERCATO_OPERATOR__BACKEND__LLAMA_CPP__N_THREADS": str(THREADS),
        "MERCATO_OPERATOR__BACKEND__LLAMA_CPP__N_CTX": str(N_CTX),
        "MERCATO_OPERATOR__LOG_LEVEL": "warning",
    }
    argv = [
        sys.executable,
        "-m",
        "mercato.cli.main",
        "operator",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class RoundResult:
    tokens_per_s: float
    p50_ms: float
    p99_ms: float
    completion_tokens: int


async def run_round(url: str, concurrency: int, requests: int, max_tokens: int) -> RoundResult:
    latencies: list[float] = []
    tokens = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal tokens
        while not queue.empty():
            i = queue.get_nowait()
            body = orjson.dumps(
                {
                    "model": MODEL,
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                }
            )
            t0 = time.perf_counter()
            async with session.post(
                url + "/v1/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                doc = orjson.loads(await resp.read())
                assert resp.status == 200, doc
            latencies.append((time.perf_counter() - t0) * 1000)
            tokens += doc["usage"]["completion_tokens"]

    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return RoundResult(tokens / wall, statistics.median(latencies), p99, tokens)


def signing_cost_us(samples: int = 3000) -> list[float]:
    """Microseconds to hash a ~1 KiB response and sign it with both keys, per run of
    ``samples // 10`` signatures (10 runs)."""
    signer = ReceiptSigner(
        SigningKeys(EcdsaSigner.from_bytes(os.urandom(32)), Ed25519Signer.from_seed(os.urandom(32)))
    )
    body = os.urandom(1024)
    req_hash = hashlib.sha256(b"request").hexdigest()

    def once() -> None:
        signer.sign("chatcmpl-x", req_hash, hashlib.sha256(body).hexdigest())

    return [timeit.timeit(once, number=samples // 10) / (samples // 10) * 1e6 for _ in range(10)]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=plots.RESULTS / "operator_node.md")
    args = ap.parse_args()
    load = plots.Load()

    ports = {"direct": free_port(), "operator": free_port()}
    tmp = Path(tempfile.mkdtemp(prefix="mercato-bench-"))
    procs = {
        "direct": start_direct(ports["direct"]),
        "operator": start_operator(ports["operator"], tmp / "op"),
    }
    urls = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    try:
        wait_healthy(urls["direct"], procs["direct"], "/v1/models")
        wait_healthy(urls["operator"], procs["operator"], "/health")
        results: dict[tuple[str, int], list[RoundResult]] = {}
        for name in urls:  # warm-up
            await run_round(urls[name], 1, 4, args.max_tokens)
        for _ in range(args.rounds):
            for concurrency in (1, 8):
                for name in ("direct", "operator"):
                    r = await run_round(urls[name], concurrency, args.requests, args.max_tokens)
                    results.setdefault((name, concurrency), []).append(r)
                    print(
                        f"{name:8} c={concurrency} {r.tokens_per_s:6.1f} tok/s "
                        f"p50 {r.p50_ms:7.1f} ms p99 {r.p99_ms:7.1f} ms",
                        flush=True,
                    )
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
            p.wait(30)

    sign_runs = signing_cost_us()
    sign_med = statistics.median(sign_runs)
    command = (
        f".venv/bin/python -m benchmarks.operator_node --rounds {args.rounds} --requests "
        f"{args.requests} --max-tokens {args.max_tokens}"
    )
    caption = f"{command} | {plots.machine()} | {plots.today()}"
    levels = sorted({c for _, c in results})
    png = plots.bars(
        args.out.parent / "operator_node_throughput.png",
        [f"concurrency {c}" for c in levels],
        {
            name: [[r.tokens_per_s for r in results[(name, c)]] for c in levels]
            for name in ("direct", "operator")
        },
        title=f"Completion tokens/s (median of {args.rounds} rounds, min-max bars)",
        ylabel="completion tokens/s",
        caption=caption,
    )
    plots.write_json(
        args.out.with_suffix(".json"),
        {
            "command": command,
            "machine": plots.machine(),
            "date": plots.today(),
            "load": str(load),
            "rounds": [
                {"server": name, "concurrency": c, **vars(r)}
                for (name, c), rs in sorted(results.items())
                for r in rs
            ],
            "signing_us": sign_runs,
        },
    )
    lines = [
        "### Operator vs `llama_cpp.server` (same model, same run)",
        "",
        f"Command: `{command}`. Machine: {plots.machine()}, shared with other work while "
        f"measuring ({load}); {plots.today()}. "
        f"SmolLM2-135M-Instruct Q4_1, n_ctx {N_CTX}, {THREADS} threads each, "
        "non-streaming chat, temperature 0, "
        f"max_tokens {args.max_tokens}; {args.requests} requests per round, {args.rounds} rounds "
        "alternating between servers; median (min-max) over rounds (p50 and p99 are each "
        "round's own).",
        "",
        "| server | concurrency | completion tokens/s | p50 latency ms | p99 latency ms |",
        "|---|---|---|---|---|",
    ]
    for (name, c), rs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(
            f"| {name} | {c} | {plots.span([r.tokens_per_s for r in rs], 1)} | "
            f"{plots.span([r.p50_ms for r in rs], 1)} | {plots.span([r.p99_ms for r in rs], 1)} |"
        )
    lines.append("")
    for c in (1, 8):
        op = statistics.median(r.tokens_per_s for r in results[("operator", c)])
        direct = statistics.median(r.tokens_per_s for r in results[("direct", c)])
        lines.append(
            f"- concurrency {c}: operator throughput = {op / direct * 100:.1f} % of direct "
            f"(goal ≥ 97 %: {'met' if op / direct >= 0.97 else 'NOT met'})"
        )
    lines.append(
        f"- signing per response (sha256 of 1 KiB + EIP-191 ECDSA + Ed25519): "
        f"{plots.span(sign_runs, 0, ' µs')} over {len(sign_runs)} runs of 300 signatures "
        f"(goal < 200 µs at the median: {'met' if sign_med < 200 else 'NOT met'})"
    )
    lines += ["", f"![operator vs direct throughput]({plots.rel(png)})"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
