"""The router's ASGI entry point: inference requests straight from ASGI, the rest via FastAPI.

``POST /v1/chat/completions`` and ``POST /v1/completions`` are every request the router
forwards, so they skip FastAPI/Starlette's per-request layers (error and exception
middlewares, route matching, ``Request`` objects): this module reads the body with the
size limit, calls :func:`mercato.router.routes.handle` with the headers and the bytes,
and turns a :class:`~mercato.errors.MercatoError` into OpenAI's error body, as the
FastAPI app's handlers do for every other route (admin, history, models, metrics),
which still go through FastAPI, as does the lifespan that builds the router's state.
Measured side by side under wrk: about a quarter less router CPU per forwarded request.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mercato.errors import InvalidRequest, MercatoError, PayloadTooLarge, UpstreamError
from mercato.router.forward import Endpoint
from mercato.router.routes import handle, json_response
from mercato.router.state import RouterState

log = logging.getLogger(__name__)

INFERENCE_PATHS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completion",
}


class ClientGone(Exception):
    """The client disconnected before its request body had arrived."""


class RouterASGI:
    """Wraps the router's FastAPI app; ``fastapi`` keeps its routes and lifespan."""

    def __init__(self, fastapi: FastAPI) -> None:
        self.fastapi = fastapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = INFERENCE_PATHS.get(scope["path"])
            if endpoint is not None:
                await self._inference(endpoint, scope, receive, send)
                return
        await self.fastapi(scope, receive, send)

    async def _inference(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.monotonic()
        state: RouterState = self.fastapi.state.router
        try:
            if scope["method"] != "POST":
                raise InvalidRequest(
                    f"{scope['path']} takes POST", status=405, code="method_not_allowed"
                )
            headers: dict[str, str] = {}
            for name, value in scope["headers"]:  # names are lower-case in ASGI
                headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
            raw = await read_body(receive, headers, state.settings.max_body_bytes)
            response = await handle(state, endpoint, headers, raw, started)
        except ClientGone:
            return
        except MercatoError as err:
            response = error_response(err)
        except Exception:
            log.exception("unhandled error")
            response = error_response(
                UpstreamError("internal error", status=500, code="internal_error")
            )
        await response(scope, receive, send)


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole request body; PayloadTooLarge past ``limit`` bytes (declared or sent)."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def error_response(err: MercatoError) -> Response:
    return json_response(err.to_body(), err.status, dict(err.headers) or None)
