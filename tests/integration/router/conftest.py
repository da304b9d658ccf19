"""Router test parts: instant OpenAI-speaking upstreams, real operator apps (openai
backend, real receipts) in front of them, a router, and a database per test (SQLite,
and PostgreSQL when MERCATO_TEST_POSTGRES_URL is set: see scripts/postgres.sh)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from mercato.crypto.keystore import SigningKeys
from mercato.crypto.signers import EcdsaSigner, Ed25519Signer
from mercato.operator.app import create_app as create_operator
from mercato.operator.settings import OperatorSettings
from mercato.router.app import create_app as create_router
from mercato.router.settings import RouterSettings
from tests.helpers import free_port, serve_app
from tests.integration.chain.conftest import (  # noqa: F401 - the anvil fixtures, shared
    anvil,
    anvil_binary,
    chain,
    faucet,
    manifest,
    new_account,
)

MODEL = "test-model"
ADMIN = "admin-secret"
POSTGRES_ENV = "MERCATO_TEST_POSTGRES_URL"


def chat_body(content: str = "hi", model: str = "test-model") -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@dataclass
class Upstream:
    """An OpenAI-compatible server that answers at once (or after ``delay``)."""

    url: str
    delay: float = 0.0
    fail_status: int | None = None
    hits: int = 0
    last_body: dict[str, Any] | None = None
    last_headers: dict[str, str] | None = None
    compress: bool = False  # gzip answers when the client accepts it (as OpenAI's API does)


async def upstream_app(up: Upstream, name: str) -> web.Application:
    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        up.hits += 1
        body = await request.json()
        up.last_body, up.last_headers = body, dict(request.headers)
        if up.delay:
            await asyncio.sleep(up.delay)
        if up.fail_status:
            return web.json_response({"error": {"message": "nope"}}, status=up.fail_status)
        if not body.get("stream"):
            answer = web.Response(
                body=orjson.dumps(chat_body(f"from {name}", body["model"])),
                content_type="application/json",
            )
            if up.compress:
                answer.enable_compression()
            return answer
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if up.compress:
            resp.enable_compression()
        await resp.prepare(request)
        for i, piece in enumerate(["from ", name, "!"]):
            chunk = {
                "id": "chatcmpl-s1",
                "object": "chat.completion.chunk",
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": piece},
                        "finish_reason": "stop" if i == 2 else None,
                    }
                ],
            }
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        if body.get("stream_options", {}).get("include_usage"):
            usage = {
                "id": "chatcmpl-s1",
                "object": "chat.completion.chunk",
                "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            }
            await resp.write(b"data: " + orjson.dumps(usage) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", chat)
    return app


@contextlib.asynccontextmanager
async def run_upstream(name: str = "up", delay: float = 0.0) -> AsyncIterator[Upstream]:
    port = free_port()
    up = Upstream(f"http://127.0.0.1:{port}/v1", delay)
    runner = web.AppRunner(await upstream_app(up, name), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield up
    finally:
        await runner.cleanup()


def signing_keys(seed: int) -> SigningKeys:
    return SigningKeys(
        EcdsaSigner.from_bytes(seed.to_bytes(32, "big")),
        Ed25519Signer.from_seed((seed + 1000).to_bytes(32, "big")),
    )


@dataclass
class OperatorNode:
    name: str
    url: str
    address: str
    upstream: Upstream

    def static(self, price: int, **extra: Any) -> dict[str, Any]:
        """This operator as a ``[[router.operators]]`` entry."""
        return {
            "address": self.address,
            "slug": self.name,
            "endpoint": self.url,
            "signers": [self.address],
            "models": [MODEL],
            "price_in_per_m": price,
            "price_out_per_m": price,
            **extra,
        }


@contextlib.asynccontextmanager
async def run_operator(
    tmp: Path, name: str, seed: int, delay: float = 0.0, port: int | None = None
) -> AsyncIterator[OperatorNode]:
    async with run_upstream(name, delay) as up:
        settings = OperatorSettings(
            data_dir=tmp / name,
            backend={"kind": "openai", "openai": {"base_url": up.url, "models": [MODEL]}},
        )
        keys = signing_keys(seed)
        async with serve_app(create_operator(settings, keys=keys), port) as url:
            yield OperatorNode(name, url, keys.ecdsa.address, up)


def router_settings(db_url: str, tmp: Path, **kw: Any) -> RouterSettings:
    base: dict[str, Any] = {
        "data_dir": tmp / "router",
        "database_url": db_url,
        "billing": {"auth": "off", "admin_token": ADMIN},
        "discovery": {"probe_interval_s": 0.5, "probe_timeout_s": 1.0},
        "routing": {
            "breaker_threshold": 3,
            "breaker_cooldown_s": 0.5,
            "attempt_timeout_s": 5.0,
            "connect_timeout_s": 1.0,
        },
        "history": {"flush_interval_s": 0.05},
    }
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return RouterSettings(**base)


@contextlib.asynccontextmanager
async def run_router(settings: RouterSettings, **kw: Any) -> AsyncIterator[str]:
    async with serve_app(create_router(settings, **kw)) as url:
        yield url


def _postgres_database(base: str) -> Iterator[str]:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'router.db'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set (start one with scripts/postgres.sh)")
    yield from _postgres_database(base)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'router.db'}"


async def admin_key(client: httpx.AsyncClient, router: str, credits: int = 0) -> dict[str, Any]:
    resp = await client.post(
        f"{router}/admin/keys",
        json={"name": "t", "credits": credits or None},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert resp.status_code == 201, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


Waiter = Callable[[Callable[[], bool], float], Awaitable[None]]


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
