"""An SSE response that hashes exactly the bytes it sends and signs them at the end.

The response hash covers every byte of every event up to and including
``data: [DONE]\\n\\n``. Before ``[DONE]`` goes out, ``finalize`` records what the
request cost (so the charge is persisted before the response finishes) and signs;
after it, the receipt goes out as an SSE comment line (``: mercato-receipt {json}``),
which clients ignore unless they look for it. If the client leaves before ``[DONE]``,
generation stops, ``abort`` records what was sent, and no receipt is signed or stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mercato.errors import MercatoError, UpstreamError
from mercato.operator.backends.base import StreamEvent
from mercato.protocol.receipts import SSE_RECEIPT_PREFIX, Receipt

log = logging.getLogger(__name__)

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

Finalize = Callable[[StreamEvent, str], Awaitable[Receipt]]
Abort = Callable[[int, StreamEvent | None, str], Awaitable[None]]


class SignedEventStream(Response):
    def __init__(
        self,
        first: StreamEvent,
        rest: AsyncGenerator[StreamEvent, None],
        finalize: Finalize,
        abort: Abort,
        headers: dict[str, str] | None = None,
    ) -> None:
        """``finalize(done_event, response_sha256)`` runs when the ``[DONE]`` event is
        next, before it is sent: it persists the charge and returns the receipt.
        ``abort(tokens_sent, last_event, outcome)`` runs when the stream ends otherwise."""
        super().__init__(status_code=200, media_type="text/event-stream")
        self._first = first
        self._rest = rest
        self._finalize = finalize
        self._abort = abort
        self._sse_headers = SSE_HEADERS + [
            (k.lower().encode(), v.encode()) for k, v in (headers or {}).items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        last: StreamEvent | None = None
        sent = 0
        outcome = "client_disconnected"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._sse_headers})
            hasher = hashlib.sha256()
            event: StreamEvent | None = self._first
            while event is not None and not gone.is_set():
                if event.done:
                    hasher.update(event.raw)
                    receipt = await self._finalize(event, hasher.hexdigest())
                    line = SSE_RECEIPT_PREFIX + receipt.to_json().encode() + b"\n\n"
                    outcome = "ok"
                    with contextlib.suppress(OSError):
                        await send(
                            {"type": "http.response.body", "body": event.raw, "more_body": True}
                        )
                        await send({"type": "http.response.body", "body": line, "more_body": True})
                    break
                hasher.update(event.raw)
                await send({"type": "http.response.body", "body": event.raw, "more_body": True})
                last = event
                sent += event.tokens
                event = await anext(self._rest, None)
            else:
                if event is None:
                    outcome = "backend_ended_early"
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the server reports a send to a closed connection
            pass
        except Exception as exc:
            outcome = "backend_failed"
            log.warning("stream aborted by backend failure: %s", exc)
            with contextlib.suppress(OSError):
                await send(
                    {"type": "http.response.body", "body": _error_event(exc), "more_body": False}
                )
        finally:
            watcher.cancel()
            await self._rest.aclose()  # stops generation if we left early
            if outcome != "ok":
                await self._abort(sent, last, outcome)


def _error_event(exc: Exception) -> bytes:
    err = exc if isinstance(exc, MercatoError) else UpstreamError("generation failed")
    return b"data: " + orjson.dumps(err.to_body()) + b"\n\n"
