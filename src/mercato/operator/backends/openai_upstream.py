"""Any OpenAI-compatible upstream: vLLM, llama.cpp's server, Ollama, SGLang, a hosted API.

One pooled aiohttp session (measured ~3x httpx's throughput here, see DESIGN.md). The
request body is forwarded byte for byte unless ``upstream_model`` renames the model;
responses are passed through unchanged (JSON) or event by event (SSE), so what the
operator signs is exactly what the upstream produced.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import orjson

from mercato.errors import InvalidRequest, MercatoError, NotFound, Overloaded, UpstreamError
from mercato.operator.backends.base import (
    DONE_EVENT,
    AnyRequest,
    Completion,
    Endpoint,
    StreamEvent,
    Usage,
    chunk_has_text,
    prompt_bytes_bound,
)
from mercato.operator.settings import OpenAIUpstreamSettings

_PATHS: dict[Endpoint, str] = {"chat": "/chat/completions", "completion": "/completions"}


def map_upstream_error(status: int, body: bytes) -> MercatoError:
    """An upstream HTTP error as the matching Mercato (and so OpenAI) error."""
    message = body[:500].decode("utf-8", "replace")
    try:
        doc = orjson.loads(body)
        err = doc.get("error", doc) if isinstance(doc, dict) else {}
        if isinstance(err, dict) and err.get("message"):
            message = str(err["message"])
        elif isinstance(err, str):
            message = err
    except orjson.JSONDecodeError:
        pass
    message = f"upstream: {message}"
    if status == 404:
        return NotFound(message, code="model_not_found")
    if status == 429:
        return Overloaded(message, retry_after=1)
    if 400 <= status < 500:
        return InvalidRequest(message, code="upstream_rejected", status=status)
    return UpstreamError(message, status=502 if status < 500 or status == 500 else status)


class OpenAIUpstreamBackend:
    kind = "openai"

    def __init__(self, settings: OpenAIUpstreamSettings) -> None:
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._models: list[str] = list(settings.models)
        self.default_max_tokens = settings.default_max_tokens

    async def start(self) -> None:
        s = self._settings
        headers = {"Content-Type": "application/json"}
        if s.api_key is not None:
            headers["Authorization"] = f"Bearer {s.api_key.get_secret_value()}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=s.max_connections),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=s.connect_timeout_s, sock_read=s.read_timeout_s
            ),
            auto_decompress=True,
        )
        if not self._models:
            self._models = await self.list_upstream_models()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def models(self) -> list[str]:
        return list(self._models)

    async def list_upstream_models(self) -> list[str]:
        async with self._request("GET", "/models") as resp:
            body = await resp.read()
            if resp.status != 200:
                raise map_upstream_error(resp.status, body)
        try:
            return [str(m["id"]) for m in orjson.loads(body)["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UpstreamError(f"upstream /models answered badly: {exc}") from exc

    def prompt_tokens(self, endpoint: Endpoint, request: AnyRequest) -> int:
        return prompt_bytes_bound(endpoint, request)

    async def ready(self) -> bool:
        try:
            await self.list_upstream_models()
        except (TimeoutError, MercatoError, aiohttp.ClientError):
            return False
        return True

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        if self._session is None:
            raise UpstreamError("backend not started")
        return self._session.request(method, self._base + path, data=body)

    def _body(self, raw: bytes, request: AnyRequest) -> bytes:
        """The client's bytes, unless the model is renamed or a priced output ceiling
        must be made explicit (the request named none)."""
        limit = request.token_limit()
        add_limit = (
            limit is not None
            and b'"max_tokens"' not in raw
            and b'"max_completion_tokens"' not in raw
        )
        if self._settings.upstream_model is None and not add_limit:
            return raw
        doc = orjson.loads(raw)
        if self._settings.upstream_model is not None:
            doc["model"] = self._settings.upstream_model
        if add_limit:
            doc["max_tokens"] = limit
        return orjson.dumps(doc)

    async def complete(self, endpoint: Endpoint, request: AnyRequest, raw: bytes) -> Completion:
        try:
            async with self._request("POST", _PATHS[endpoint], self._body(raw, request)) as resp:
                body = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError(
                f"upstream unreachable: {exc!r}", code="upstream_unreachable"
            ) from exc
        if status != 200:
            raise map_upstream_error(status, body)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("upstream answered with invalid JSON") from exc
        return Completion(
            body=body, id=str(doc.get("id") or ""), usage=Usage.from_dict(doc.get("usage"))
        )

    async def stream(
        self, endpoint: Endpoint, request: AnyRequest, raw: bytes
    ) -> AsyncGenerator[StreamEvent, None]:
        try:
            ctx = self._request("POST", _PATHS[endpoint], self._body(raw, request))
            resp = await ctx.__aenter__()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError(
                f"upstream unreachable: {exc!r}", code="upstream_unreachable"
            ) from exc
        try:
            if resp.status != 200:
                raise map_upstream_error(resp.status, await resp.read())
            rid: str | None = None
            usage: Usage | None = None
            lines: list[bytes] = []
            async for line in resp.content:
                lines.append(line)
                if line.strip():
                    continue
                event = b"".join(lines)
                lines = []
                data = _event_data(event)
                if data is None:
                    yield StreamEvent(event, id=rid)  # comment or keep-alive: passed through
                    continue
                if data == b"[DONE]":
                    yield StreamEvent(event, id=rid, usage=usage, done=True)
                    return
                try:
                    doc = orjson.loads(data)
                except orjson.JSONDecodeError:
                    doc = {}
                tokens = 0
                if isinstance(doc, dict):
                    rid = rid or (str(doc["id"]) if doc.get("id") else None)
                    usage = Usage.from_dict(doc.get("usage")) or usage
                    tokens = int(chunk_has_text(doc))
                yield StreamEvent(event, id=rid, usage=usage, tokens=tokens)
            if lines:
                yield StreamEvent(b"".join(lines) + b"\n", id=rid, usage=usage)
            # The upstream closed without [DONE]: end the stream in the standard way.
            yield StreamEvent(DONE_EVENT, id=rid, usage=usage, done=True)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError(f"upstream stream failed: {exc!r}") from exc
        finally:
            await ctx.__aexit__(None, None, None)


def _event_data(event: bytes) -> bytes | None:
    """The payload of an SSE event's ``data:`` lines, or None when it has none."""
    parts = [line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(parts) if parts else None
