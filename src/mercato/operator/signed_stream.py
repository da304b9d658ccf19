"""An SSE response that hashes exactly the bytes it sends and signs them at the end.

The response hash covers every byte of every event up to and including
``data: [DONE]\\n\\n``. After that the receipt goes out as an SSE comment line
(``: mercato-receipt {json}\\n\\n``), which clients ignore unless they look for it. If
the client leaves before ``[DONE]`` has been sent, generation is stopped and no
receipt is signed or stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, Callable

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


class SignedEventStream(Response):
    def __init__(
        self,
        first: StreamEvent,
        rest: AsyncGenerator[StreamEvent, None],
        sign: Callable[[str, str], Receipt],
        on_finish: Callable[[Receipt | None, StreamEvent | None, str], None],
    ) -> None:
        """``sign(response_id, response_sha256)``; ``on_finish(receipt, last, outcome)``."""
        super().__init__(status_code=200, media_type="text/event-stream")
        self._first = first
        self._rest = rest
        self._sign = sign
        self._on_finish = on_finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        receipt: Receipt | None = None
        last: StreamEvent | None = None
        outcome = "client_disconnected"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            hasher = hashlib.sha256()
            event: StreamEvent | None = self._first
            while event is not None:
                if gone.is_set():
                    break
                hasher.update(event.raw)
                await send({"type": "http.response.body", "body": event.raw, "more_body": True})
                last = event
                if event.done:
                    receipt = self._sign(event.id or "", hasher.hexdigest())
                    line = SSE_RECEIPT_PREFIX + receipt.to_json().encode() + b"\n\n"
                    with contextlib.suppress(OSError):
                        await send({"type": "http.response.body", "body": line, "more_body": True})
                    outcome = "ok"
                    break
                event = await anext(self._rest, None)
            else:
                outcome = "backend_ended_early"
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the server reports a send to a closed connection
            pass
        except Exception as exc:
            outcome = "backend_failed"
            log.warning("stream aborted by backend failure: %s", exc)
            error = _error_event(exc)
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": error, "more_body": False})
        finally:
            watcher.cancel()
            await self._rest.aclose()  # stops generation if we left early
            self._on_finish(receipt, last, outcome)


def _error_event(exc: Exception) -> bytes:
    err = exc if isinstance(exc, MercatoError) else UpstreamError("generation failed")
    return b"data: " + orjson.dumps(err.to_body()) + b"\n\n"
