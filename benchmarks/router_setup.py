"""The processes benchmarks.router measures, and the tools that measure them.

An instant upstream (aiohttp, its own process) that answers OpenAI chat completions as
JSON or as an SSE stream. In front of it, each one worker process: a Mercato operator
node (backend "openai"; it signs every response), Mercato's router with the upstream as
a hosted provider, a second router whose only offer is that operator (a
``[[router.operators]]`` entry with the operator's signing address, as
tests/integration/router configures operators without a chain: the router verifies each
receipt against it), and the LiteLLM proxy (its own venv, installed here on first use).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / "benchmarks" / ".venv-litellm"
LITELLM_SPEC = "litellm[proxy]==1.106.*"
MASTER_KEY = "sk-bench-master"
MODEL = "m"
REQUEST = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
BODY = json.dumps(REQUEST)
STREAM_BODY = json.dumps({**REQUEST, "stream": True, "stream_options": {"include_usage": True}})
ANSWER = json.dumps(
    {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
)
# The upstream as a script for its own process. Streams: a role chunk with empty
# content (as OpenAI sends), four content chunks, a finish chunk, the usage chunk when
# asked for, then [DONE]; each event its own write, nothing waits.
UPSTREAM = f"""
import sys
import orjson
from aiohttp import web
ANSWER = {ANSWER!r}.encode()
MODEL = {MODEL!r}

def event(delta, finish=None):
    return b"data: " + orjson.dumps({{
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
        "choices": [{{"index": 0, "delta": delta, "finish_reason": finish}}],
    }}) + b"\\n\\n"

EVENTS = [event({{"role": "assistant", "content": ""}})]
EVENTS += [event({{"content": piece}}) for piece in ("o", "k", " o", "k")]
EVENTS.append(event({{}}, "stop"))
USAGE = b"data: " + orjson.dumps({{
    "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
    "choices": [], "usage": {{"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}},
}}) + b"\\n\\n"
DONE = b"data: [DONE]\\n\\n"

async def chat(request):
    doc = orjson.loads(await request.read())
    if not doc.get("stream"):
        return web.Response(body=ANSWER, content_type="application/json")
    resp = web.StreamResponse(headers={{"Content-Type": "text/event-stream"}})
    await resp.prepare(request)
    for ev in EVENTS:
        await resp.write(ev)
    if (doc.get("stream_options") or {{}}).get("include_usage"):
        await resp.write(USAGE)
    await resp.write(DONE)
    await resp.write_eof()
    return resp

async def models(_):
    return web.json_response({{"object": "list", "data": [{{"id": MODEL, "object": "model"}}]}})

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
WRK_TIMEOUT = "30s"  # wrk's default 2 s would drop LiteLLM's slowest answers from p99

# name -> (label, what the row measures)
CONTENDERS: dict[str, tuple[str, str]] = {
    "direct": ("direct", "the upstream itself"),
    "operator": ("operator alone", "client -> operator node -> upstream"),
    "mercato": ("mercato -> provider", "client -> router -> upstream as a hosted provider"),
    "mercato-op": ("mercato -> operator", "client -> router -> operator node -> upstream"),
    "litellm": ("litellm -> provider", "client -> LiteLLM proxy -> upstream"),
}
# the processes a request to each contender passes through (besides the upstream)
PATHS: dict[str, tuple[str, ...]] = {
    "direct": (),
    "operator": ("operator",),
    "mercato": ("mercato",),
    "mercato-op": ("mercato-op", "operator"),
    "litellm": ("litellm",),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            resp = httpx.get(url, timeout=2)
            if resp.status_code < 500:
                return resp
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not start")


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, LITELLM_SPEC], check=True)
    return binary


# ---- memory ---------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            continue
    return out


def rss_kib(pid: int) -> int:
    """VmRSS summed over the process and its descendants, KiB (shared pages count once
    per process)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process and its descendants so far (not of children
    already reaped), seconds."""
    ticks = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


# ---- wrk ------------------------------------------------------------------------------


def ms(value: str) -> float:
    number = float(re.match(r"[\d.]+", value).group())  # type: ignore[union-attr]
    unit = value.lstrip("0123456789.")
    return number * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk_command(url: str, concurrency: int, seconds: float, script: Path) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def parse_wrk(out: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0.0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += float(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(float(g) for g in m.groups())
    if not requests:  # nothing finished inside the run: no latency to speak of
        p50 = p99 = float("nan")
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "requests": requests}


def wrk(url: str, concurrency: int, seconds: float, script: Path) -> dict[str, float]:
    cmd = wrk_command(url, concurrency, seconds, script)
    return parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def loadgen(url: str, concurrency: int, seconds: float, body: Path) -> dict[str, Any]:
    """One run of benchmarks.loadgen (its own process), streamed requests."""
    cmd = [sys.executable, "-m", "benchmarks.loadgen", url, "--body-file", str(body)]
    cmd += ["--key", MASTER_KEY, "-c", str(concurrency), "-d", f"{seconds:g}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


# ---- the contenders -------------------------------------------------------------------


@dataclass
class Fleet:
    """Every process of one run; ``urls`` maps contender -> chat completions URL."""

    tmp: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    operator_address: str = ""

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps it
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )

    def _router(self, name: str, port: int, offer: str) -> None:
        data = self.tmp / name
        data.mkdir()
        (data / "router.toml").write_text(
            f'[router]\nport = {port}\ndata_dir = "{data}"\nlog_level = "warning"\n'
            '[router.billing]\nauth = "off"\nadmin_token = "bench"\n' + offer
        )
        argv = [sys.executable, "-m", "mercato.cli.main", "router", "serve"]
        self._spawn(name, [*argv, "--config", str(data / "router.toml")])

    def start(self, litellm: bool) -> None:
        ports = {name: free_port() for name in CONTENDERS}
        up = ports["direct"]
        chat = "http://127.0.0.1:{}/v1/chat/completions"
        self._spawn("upstream", [sys.executable, "-c", UPSTREAM, str(up)])
        self.urls["direct"] = chat.format(up)
        if litellm:  # the slowest to start: first
            (self.tmp / "litellm.yaml").write_text(
                f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n"
                f"      model: openai/{MODEL}\n"
                f"      api_base: http://127.0.0.1:{up}/v1\n      api_key: unused\n"
            )
            env = {
                **os.environ,
                "LITELLM_MASTER_KEY": MASTER_KEY,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
            }
            argv = [str(ensure_litellm()), "--config", str(self.tmp / "litellm.yaml")]
            argv += ["--host", "127.0.0.1", "--port", str(ports["litellm"]), "--num_workers", "1"]
            self._spawn("litellm", argv, env)
        op_dir = self.tmp / "operator"
        op_dir.mkdir()
        (op_dir / "operator.toml").write_text(
            f'[operator]\nport = {ports["operator"]}\ndata_dir = "{op_dir}"\n'
            'log_level = "warning"\n[operator.signing]\nfast_kdf = true\n'
            '[operator.backend]\nkind = "openai"\n[operator.backend.openai]\n'
            f'base_url = "http://127.0.0.1:{up}/v1"\nmodels = ["{MODEL}"]\n'
        )
        argv = [sys.executable, "-m", "mercato.cli.main", "operator", "serve"]
        self._spawn("operator", [*argv, "--config", str(op_dir / "operator.toml")])
        self._router(
            "mercato",
            ports["mercato"],
            f'[[router.providers]]\nname = "instant"\nbase_url = "http://127.0.0.1:{up}/v1"\n'
            f'models = ["{MODEL}"]\nprice_in_per_m = 1\nprice_out_per_m = 1\n',
        )
        wait_up(f"http://127.0.0.1:{up}/v1/models", self.procs["upstream"])
        health = wait_up(f"http://127.0.0.1:{ports['operator']}/health", self.procs["operator"])
        self.operator_address = str(health.json()["signing_address"])
        self.urls["operator"] = chat.format(ports["operator"])
        self._router(
            "mercato-op",
            ports["mercato-op"],
            f'[[router.operators]]\naddress = "{self.operator_address}"\nslug = "bench-op"\n'
            f'endpoint = "http://127.0.0.1:{ports["operator"]}"\n'
            f'signers = ["{self.operator_address}"]\nmodels = ["{MODEL}"]\n'
            "price_in_per_m = 1\nprice_out_per_m = 1\n",
        )
        for name in ("mercato", "mercato-op"):
            wait_up(f"http://127.0.0.1:{ports[name]}/health", self.procs[name])
            self.urls[name] = chat.format(ports[name])
        if litellm:
            wait_up(
                f"http://127.0.0.1:{ports['litellm']}/health/liveliness",
                self.procs["litellm"],
                timeout=300,
            )
            self.urls["litellm"] = chat.format(ports["litellm"])
        for name, url in self.urls.items():  # a first answer of each kind, or fail loudly
            for body in (BODY, STREAM_BODY):
                resp = httpx.post(
                    url,
                    content=body,
                    timeout=30,
                    headers={
                        "Content-Type": "application/json",
                        "Authorization": f"Bearer {MASTER_KEY}",
                    },
                )
                if resp.status_code != 200:
                    raise RuntimeError(f"{name}: {resp.status_code} {resp.text[:300]}")

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)

    def crashed(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]


def describe_machine() -> dict[str, Any]:
    with open("/proc/meminfo") as fh:
        mem_gib = int(fh.readline().split()[1]) / 1024 / 1024
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_gib, 1)}
