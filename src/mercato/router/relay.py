"""Relaying an upstream's SSE stream to the client, event by event.

Events are sent as they arrive, byte for byte. The upstream's ``data: [DONE]`` event
and an operator's receipt comment are held back until the stream has ended: then the
receipt is checked against the exact bytes relayed (and the operator's on-chain
signers), the request is billed (durably, see credits.py), and only then do
``[DONE]``, the receipt comment (unchanged) and a ``: mercato-cost {...}`` comment go
out. A receipt that fails the check is not passed on: ``: mercato-receipt-rejected
<reason>`` goes instead, and nothing is charged. Last, when the router paid the
operator itself, its payer is told the outcome with the verified receipt (or None).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mercato.errors import UpstreamError
from mercato.protocol.receipts import SSE_DONE, SSE_RECEIPT_PREFIX, Receipt
from mercato.router.forward import OpenStream, verify_signed

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StreamOutcome:
    complete: bool  # the whole answer reached the client, verified where it must be
    reason: str  # ok, client_disconnected, upstream_failed, receipt_<why>, incomplete
    usage: dict[str, int] | None
    data_events: int
    receipt: Receipt | None


def _is_done(event: bytes) -> bool:
    return event.strip() == SSE_DONE.strip()


class RelayStream(Response):
    def __init__(
        self,
        stream: OpenStream,
        request_raw: bytes,
        headers: dict[str, str],
        finish: Callable[[StreamOutcome], Awaitable[bytes]],
    ) -> None:
        """``finish(outcome)`` bills the request and returns trailing bytes to send."""
        super().__init__(status_code=200)
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ]
        self._stream = stream
        self._request = request_raw
        self._finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        st = self._stream
        signed: list[bytes] = []
        done_event: bytes | None = None
        receipt_raw: bytes | None = None
        trailing: list[bytes] = []
        usage: dict[str, int] | None = None
        data_events = 0
        reason = "incomplete"
        sent_ok = True
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            event: bytes | None = st.first
            while event is not None:
                if gone.is_set():
                    reason = "client_disconnected"
                    break
                if event.startswith(SSE_RECEIPT_PREFIX):
                    receipt_raw = event
                elif done_event is not None:
                    trailing.append(event)
                elif _is_done(event):
                    done_event = event
                    signed.append(event)
                else:
                    signed.append(event)
                    if event.startswith(b"data:"):
                        data_events += 1
                        if b'"usage"' in event:
                            usage = _usage(event) or usage
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                event = await anext(st.events, None)
        except OSError:
            reason, sent_ok = "client_disconnected", False
        except (aiohttp.ClientError, TimeoutError, UpstreamError) as exc:
            reason = "upstream_failed"
            log.warning("stream from %s broke: %r", st.offer.name, exc)
        finally:
            st.close()
            watcher.cancel()
        receipt: Receipt | None = None
        complete = False
        if reason == "incomplete":  # the upstream ended the stream
            if st.offer.kind == "provider":
                complete = done_event is not None or data_events > 0
                reason = "ok" if complete else "incomplete"
            elif done_event is None:
                reason = "incomplete"
            else:
                receipt, reason = _check(st, self._request, receipt_raw, b"".join(signed))
                complete = receipt is not None
        outcome = StreamOutcome(complete, reason, usage, data_events, receipt)
        st.finish(complete)
        try:
            tail = await self._finish(outcome)
            if not sent_ok or gone.is_set():
                return
            out = b""
            if complete or reason.startswith("receipt_"):
                out += done_event or SSE_DONE
                if receipt is not None and receipt_raw is not None:
                    out += receipt_raw
                elif reason.startswith("receipt_"):
                    out += b": mercato-receipt-rejected " + reason.encode() + b"\n\n"
                out += b"".join(trailing) + tail
            elif reason == "upstream_failed" or reason == "incomplete":
                err = UpstreamError(
                    f"the stream from {st.offer.name} broke off", code="stream_broken"
                )
                out += b"data: " + orjson.dumps(err.to_body()) + b"\n\n"
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": out, "more_body": False})
        finally:
            await st.paid(receipt)  # the router's payer, once the client had everything


def _check(
    st: OpenStream, request: bytes, receipt_raw: bytes | None, signed: bytes
) -> tuple[Receipt | None, str]:
    if receipt_raw is None:
        return None, "receipt_missing"
    try:
        receipt = Receipt.from_json(receipt_raw[len(SSE_RECEIPT_PREFIX) :].strip())
    except ValueError:
        return None, "receipt_malformed"
    got, why = verify_signed(st.offer, receipt, request, signed)
    return (got, "ok") if got is not None else (None, f"receipt_{why}")


def _usage(event: bytes) -> dict[str, int] | None:
    try:
        doc = orjson.loads(event[5:].strip())
    except orjson.JSONDecodeError:
        return None
    u = doc.get("usage") if isinstance(doc, dict) else None
    if not isinstance(u, dict):
        return None
    try:
        return {
            "prompt_tokens": int(u.get("prompt_tokens") or 0),
            "completion_tokens": int(u.get("completion_tokens") or 0),
        }
    except (TypeError, ValueError):
        return None
