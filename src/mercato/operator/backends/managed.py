"""A backend whose upstream server the operator starts and supervises itself.

Presets: ``vllm`` (``vllm serve MODEL``), ``llama-cpp-server`` (``python -m
llama_cpp.server``) and ``custom`` (any argv; ``{port}`` is substituted). The child
binds 127.0.0.1 on its own port; the operator waits until it answers ``/v1/models``,
forwards its output to the log, restarts it with capped exponential backoff when it
dies, and stops it (SIGTERM, then SIGKILL) on shutdown. Requests reach it through the
``openai`` backend; while it is down they get 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncGenerator

from mercato.errors import ConfigError, Unavailable
from mercato.operator.backends.base import AnyRequest, Completion, Endpoint, StreamEvent
from mercato.operator.backends.openai_upstream import OpenAIUpstreamBackend
from mercato.operator.settings import ManagedSettings, OpenAIUpstreamSettings

log = logging.getLogger("mercato.managed")
_STABLE_AFTER_S = 60.0  # a child that lived this long resets the backoff


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def build_command(settings: ManagedSettings, port: int) -> tuple[list[str], str]:
    """The child's argv and the model name it serves."""
    p = str(port)
    if settings.preset == "vllm":
        if not settings.model:
            raise ConfigError("managed vllm: set [operator.backend.managed] model")
        name = settings.served_model_name or settings.model
        argv = ["vllm", "serve", settings.model, "--host", "127.0.0.1", "--port", p]
        argv += ["--served-model-name", name]
    elif settings.preset == "llama-cpp-server":
        from mercato.operator.backends.llama_cpp import default_model_path

        model = settings.model or str(default_model_path())
        name = settings.served_model_name or "smollm2-135m-instruct"
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", model]
        argv += ["--model_alias", name, "--host", "127.0.0.1", "--port", p]
    else:
        if not settings.command or not settings.served_model_name:
            raise ConfigError("managed custom: set command and served_model_name")
        name = settings.served_model_name
        argv = [arg.replace("{port}", p) for arg in settings.command]
    return argv + list(settings.extra_args), name


class ManagedBackend:
    kind = "managed"

    def __init__(self, settings: ManagedSettings) -> None:
        self._settings = settings
        self.port = settings.port or free_port()
        self.argv, self.model_name = build_command(settings, self.port)
        self._upstream = OpenAIUpstreamBackend(
            OpenAIUpstreamSettings(
                base_url=f"http://127.0.0.1:{self.port}/v1", models=[self.model_name]
            )
        )
        self._proc: asyncio.subprocess.Process | None = None
        self._healthy = asyncio.Event()
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._log_task: asyncio.Task[None] | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        await self._upstream.start()
        await self._spawn()
        try:
            await self._wait_healthy()
        except BaseException:
            await self._terminate()
            await self._upstream.close()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="managed-supervisor")

    async def close(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._terminate()
        await self._upstream.close()

    def models(self) -> list[str]:
        return [self.model_name]

    @property
    def default_max_tokens(self) -> int:
        return self._upstream.default_max_tokens

    def prompt_tokens(self, endpoint: Endpoint, request: AnyRequest) -> int:
        return self._upstream.prompt_tokens(endpoint, request)

    async def ready(self) -> bool:
        return self._healthy.is_set()

    async def complete(self, endpoint: Endpoint, request: AnyRequest, raw: bytes) -> Completion:
        self._require_healthy()
        return await self._upstream.complete(endpoint, request, raw)

    async def stream(
        self, endpoint: Endpoint, request: AnyRequest, raw: bytes
    ) -> AsyncGenerator[StreamEvent, None]:
        self._require_healthy()
        async for event in self._upstream.stream(endpoint, request, raw):
            yield event

    def _require_healthy(self) -> None:
        if not self._healthy.is_set():
            raise Unavailable(
                "the model server is restarting",
                code="backend_restarting",
                headers={"Retry-After": "2"},
            )

    # -- the child process ------------------------------------------------------------

    async def _spawn(self) -> None:
        log.info("starting %s", " ".join(self.argv))
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self._settings.env},
                start_new_session=True,  # its own process group: we stop all of it
            )
        except FileNotFoundError as exc:
            raise ConfigError(f"cannot start the model server: {exc}") from exc
        self._log_task = asyncio.create_task(self._forward_logs(self._proc))

    async def _forward_logs(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            log.info("[child %d] %s", proc.pid, line.decode("utf-8", "replace").rstrip())

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self._settings.startup_timeout_s
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                raise Unavailable(
                    f"model server exited with code {self._proc.returncode} while starting",
                    code="backend_failed",
                )
            if await self._upstream.ready():
                self._healthy.set()
                log.info("model server healthy on port %d (pid %d)", self.port, self._proc.pid)
                return
            await asyncio.sleep(min(self._settings.health_interval_s, 0.5))
        raise Unavailable("model server did not become healthy in time", code="backend_timeout")

    async def _supervise(self) -> None:
        backoff = self._settings.restart_backoff_s
        while not self._stopping:
            proc = self._proc
            if proc is not None:
                started = time.monotonic()
                code = await proc.wait()
                self._healthy.clear()
                if self._stopping:
                    return
                if time.monotonic() - started > _STABLE_AFTER_S:
                    backoff = self._settings.restart_backoff_s
                log.warning("model server exited with code %s; restarting in %.1fs", code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._settings.restart_backoff_max_s)
            self.restarts += 1
            try:
                await self._spawn()
                await self._wait_healthy()
            except Unavailable as exc:  # try again after the next backoff
                log.error("restart failed: %s", exc)
                await self._terminate()

    async def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        self._healthy.clear()
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self._settings.stop_timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if self._log_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._log_task, 2)
