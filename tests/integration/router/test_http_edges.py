"""The router's inference endpoints straight on ASGI (router/asgi.py): every bad input
gets OpenAI's error body, and the FastAPI routes beside them still answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from .conftest import router_settings, run_router, run_upstream

LIMIT = 4096


async def _error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text


async def test_bad_requests_at_the_inference_endpoints(tmp_path: Path, sqlite_url: str) -> None:
    async with run_upstream("up") as up:
        provider = {"name": "p", "base_url": up.url, "models": ["m"]}
        settings = router_settings(sqlite_url, tmp_path, providers=[provider], max_body_bytes=LIMIT)
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            chat = f"{router}/v1/chat/completions"
            ok = await c.post(chat, json={"model": "m", "messages": []})
            assert ok.status_code == 200 and ok.headers["x-mercato-served-by"] == "p"

            await _error(await c.get(chat), 405, "method_not_allowed")
            await _error(await c.post(chat, content=b"{not json"), 400, "invalid_json")
            await _error(await c.post(chat, json=[1, 2]), 400, "invalid_json")
            await _error(await c.post(chat, json={"messages": []}), 400, "invalid_parameter")
            await _error(await c.post(chat, json={"model": "nope"}), 404, "model_not_found")
            big = b'{"model": "m", "pad": "' + b"x" * LIMIT + b'"}'
            await _error(await c.post(chat, content=big), 413, "request_too_large")

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
                for _ in range(8):
                    yield b" " * 1024

            await _error(await c.post(chat, content=chunks()), 413, "request_too_large")
            await _error(await c.post(f"{router}/v1/completions", content=b""), 400, "invalid_json")
            # Everything else is still FastAPI's: health, models, unknown paths.
            assert (await c.get(f"{router}/health")).json()["status"] == "ok"
            models = (await c.get(f"{router}/v1/models")).json()["data"]
            assert [m["id"] for m in models] == ["m"]
            await _error(await c.get(f"{router}/v1/nothing"), 404, "unknown_endpoint")
            # The router still serves after all that.
            again = await c.post(chat, json={"model": "m", "messages": []})
            assert again.status_code == 200


async def test_answers_of_a_provider_that_compresses_arrive_whole(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The router asks upstreams for identity encoding: a provider that gzips when
    allowed still yields readable JSON and SSE, and its usage is billed."""
    async with run_upstream("up") as up:
        up.compress = True
        provider = {"name": "p", "base_url": up.url, "models": ["m"]}
        settings = router_settings(sqlite_url, tmp_path, providers=[provider])
        async with run_router(settings) as router, httpx.AsyncClient() as c:
            chat = f"{router}/v1/chat/completions"
            whole = await c.post(chat, json={"model": "m", "messages": []})
            assert whole.status_code == 200 and whole.json()["choices"], whole.text
            body = {"model": "m", "messages": [], "stream": True}
            async with c.stream("POST", chat, json=body) as stream:
                text = "".join([chunk async for chunk in stream.aiter_text()])
            assert stream.status_code == 200 and "from " in text and "[DONE]" in text, text
            assert up.last_headers is not None
            assert up.last_headers.get("Accept-Encoding") == "identity"
