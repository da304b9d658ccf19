"""The ``openai`` backend against a real HTTP upstream speaking the OpenAI API.

The upstream here is a small aiohttp server standing in for vLLM or a hosted provider;
it answers with deliberately unusual bytes (spacing, non-ASCII) so that the tests can
show the operator passes them through and signs them unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from mercato.operator.app import create_app
from mercato.operator.settings import OperatorSettings
from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, split_sse_receipt, verify_receipt
from tests.helpers import free_port, serve_app

JSON_BODY = (
    '{"id": "chatcmpl-up1",  "object": "chat.completion", "model": "up-model",'
    ' "choices": [{"index": 0, "message": {"role": "assistant", "content": "héllo ✓"},'
    ' "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3,'
    ' "total_tokens": 8}}'
).encode()
_CHUNK = b'data: {"id":"chatcmpl-up2","object":"chat.completion.chunk",'
CHUNKS = [
    _CHUNK + b'"choices":[{"index":0,"delta":{"role":"assistant","content":"h\xc3\xa9"}}]}\n\n',
    b": keep-alive\n\n",
    _CHUNK + b'"choices":[{"index":0,"delta":{"content":"llo"},"finish_reason":"stop"}]}\n\n',
    _CHUNK
    + b'"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n',
]


async def upstream_app() -> web.Application:
    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "up-model"}, {"id": "boom"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("model") == "boom":
            status = int(body.get("status", 500))
            err = {"error": {"message": f"upstream says {status}", "type": "x"}}
            return web.json_response(err, status=status)
        if not body.get("stream"):
            return web.Response(body=JSON_BODY, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for chunk in CHUNKS:
            await resp.write(chunk)
        if not body.get("no_done"):
            await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    runner = web.AppRunner(await upstream_app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


def settings_for(tmp_path: Path, base_url: str) -> OperatorSettings:
    return OperatorSettings(
        data_dir=tmp_path,
        backend={"kind": "openai", "openai": {"base_url": base_url}},
        signing={"fast_kdf": True},
    )


@pytest.fixture
async def operator(tmp_path: Path, upstream: str) -> AsyncIterator[str]:
    async with serve_app(create_app(settings_for(tmp_path, upstream))) as url:
        yield url


async def test_models_are_discovered_from_the_upstream(operator: str) -> None:
    async with httpx.AsyncClient() as c:
        ids = [m["id"] for m in (await c.get(f"{operator}/v1/models")).json()["data"]]
    assert ids == ["up-model", "boom"]


async def test_json_passes_through_byte_for_byte_and_is_signed(operator: str) -> None:
    request = b'{"model": "up-model", "messages": [{"role": "user", "content": "hi"}]}'
    async with httpx.AsyncClient() as c:
        resp = await c.post(f"{operator}/v1/chat/completions", content=request)
    assert resp.status_code == 200
    assert resp.content == JSON_BODY
    receipt = Receipt.from_json(resp.headers[RECEIPT_HEADER])
    assert receipt.id == "chatcmpl-up1"
    assert receipt.response_sha256 == hashlib.sha256(JSON_BODY).hexdigest()
    assert verify_receipt(receipt, request, resp.content).ok


@pytest.mark.parametrize("no_done", [False, True])
async def test_stream_passes_through_event_by_event(operator: str, no_done: bool) -> None:
    body = {"model": "up-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if no_done:
        body["no_done"] = True
    request = orjson.dumps(body)
    async with httpx.AsyncClient() as c:
        resp = await c.post(f"{operator}/v1/chat/completions", content=request)
    signed, receipt = split_sse_receipt(resp.content)
    # Upstream bytes unchanged; a stream the upstream left without [DONE] is ended properly.
    assert signed == b"".join(CHUNKS) + b"data: [DONE]\n\n"
    assert receipt is not None and receipt.id == "chatcmpl-up2"
    assert verify_receipt(receipt, request, signed).ok


@pytest.mark.parametrize(
    ("upstream_status", "status", "code"),
    [
        (400, 400, "upstream_rejected"),
        (429, 429, "overloaded"),
        (500, 502, "upstream_error"),
        (503, 503, "upstream_error"),
    ],
)
async def test_upstream_errors_map_to_openai_errors(
    operator: str, upstream_status: int, status: int, code: str
) -> None:
    body = {
        "model": "boom",
        "messages": [{"role": "user", "content": "x"}],
        "status": upstream_status,
    }
    async with httpx.AsyncClient() as c:
        resp = await c.post(f"{operator}/v1/chat/completions", json=body)
    assert resp.status_code == status
    err = resp.json()["error"]
    assert err["code"] == code and f"upstream says {upstream_status}" in err["message"]
    assert RECEIPT_HEADER not in resp.headers
    if status == 429:
        assert resp.headers["Retry-After"] == "1"


async def test_unreachable_upstream_is_a_502(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    settings = settings_for(tmp_path, dead)
    settings.backend.openai.models = ["m"]  # no discovery: the upstream is down
    async with serve_app(create_app(settings)) as url, httpx.AsyncClient() as c:
        resp = await c.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        )
        health = await c.get(f"{url}/health")
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "upstream_unreachable"
    assert health.status_code == 503


async def test_receipt_is_served_later(operator: str) -> None:
    request = b'{"model":"up-model","messages":[{"role":"user","content":"hi"}]}'
    async with httpx.AsyncClient() as c:
        resp = await c.post(f"{operator}/v1/chat/completions", content=request)
        receipt = Receipt.from_json(resp.headers[RECEIPT_HEADER])
        await asyncio.sleep(0.1)  # past the write-behind interval
        for algo, sig, addr in (
            ("ecdsa", receipt.ecdsa_signature, receipt.signing_address),
            ("ed25519", receipt.ed25519_signature, receipt.ed25519_public_key),
        ):
            doc = (
                await c.get(f"{operator}/v1/signature/chatcmpl-up1", params={"signing_algo": algo})
            ).json()
            assert doc == {
                "text": receipt.text,
                "signature": sig,
                "signing_address": addr,
                "signing_algo": algo,
            }
