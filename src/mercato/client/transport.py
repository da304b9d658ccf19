"""httpx transports under the official ``openai`` client: pay, retry a 402 once, and
verify the signed receipt of every answer against the exact bytes sent and received.

JSON answers are read whole and checked before ``openai`` sees them. Streams are passed
through chunk by chunk; when ``data: [DONE]`` arrives the rest of the stream (the
receipt comment, which ``openai`` would not read) is drained and checked before the
``[DONE]`` chunk is handed on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import orjson

from mercato.client.paying import PaymentStrategy
from mercato.client.verify import response_id
from mercato.protocol.receipts import (
    RECEIPT_HEADER,
    SSE_DONE,
    Receipt,
    split_sse_receipt,
    verify_receipt,
)

PAID_PATHS = ("/chat/completions", "/completions")
OPERATOR_HEADER = "X-Mercato-Operator-Address"
SERVED_BY_HEADER = "X-Mercato-Served-By"
COST_HEADER = "X-Mercato-Cost"
COST_COMMENT = b": mercato-cost "
T = TypeVar("T")


class ReceiptError(Exception):
    """An answer's receipt is missing or does not verify (with ``strict=True``)."""

    def __init__(self, answer: PaidAnswer) -> None:
        super().__init__(f"receipt not verified: {answer.reason}")
        self.answer = answer


@dataclass(frozen=True, slots=True)
class PaidAnswer:
    """What one answer cost, who signed it, and whether the signature checks out."""

    response_id: str | None
    verified: bool
    reason: str  # "ok" or why not
    receipt: Receipt | None
    operator: str | None  # the signer (the operator's address)
    served_by: str | None  # the router's name for the operator, when through a router
    method: str  # api_key, spendauth, channel, x402
    cost: int | None  # base units: the receipt's signed charge, or the router's bill
    payment: dict[str, Any] | None
    stream: bool


def _router_cost(raw: bytes, headers: httpx.Headers) -> int | None:
    if headers.get(COST_HEADER):
        try:
            return int(headers[COST_HEADER])
        except ValueError:
            return None
    at = raw.rfind(COST_COMMENT)
    if at < 0:
        return None
    try:
        return int(orjson.loads(raw[at + len(COST_COMMENT) :].split(b"\n", 1)[0])["cost"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def check_answer(
    request: bytes,
    raw: bytes,
    headers: httpx.Headers,
    *,
    stream: bool,
    method: str,
    expected_signers: frozenset[str] | None = None,
) -> PaidAnswer:
    """Verify the answer's receipt (header, or the SSE comment after ``[DONE]``)."""
    receipt: Receipt | None = None
    signed = raw
    try:
        if stream:
            signed, receipt = split_sse_receipt(raw)
        elif headers.get(RECEIPT_HEADER):
            receipt = Receipt.from_json(headers[RECEIPT_HEADER])
    except (ValueError, KeyError, TypeError):
        receipt = None
    verified, reason = False, "no_receipt"
    if receipt is not None:
        result = verify_receipt(receipt, request, signed)
        verified, reason = result.ok, result.reason
        if (
            verified
            and expected_signers is not None
            and receipt.signing_address.lower() not in expected_signers
        ):
            verified, reason = False, "unexpected_signer"
    payment = receipt.payment if receipt is not None else None
    cost = _router_cost(raw, headers)
    if cost is None and payment is not None and payment.get("charged") is not None:
        cost = int(payment["charged"])
    return PaidAnswer(
        response_id=response_id(signed),
        verified=verified,
        reason=reason,
        receipt=receipt,
        operator=headers.get(OPERATOR_HEADER) or (receipt.signing_address if receipt else None),
        served_by=headers.get(SERVED_BY_HEADER),
        method=method,
        cost=cost,
        payment=payment,
        stream=stream,
    )


@dataclass
class Ledger:
    """The answers seen by one client: the last one, and the recent ones by id."""

    keep: int = 1000
    last: PaidAnswer | None = None
    _by_id: OrderedDict[str, PaidAnswer] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, answer: PaidAnswer) -> None:
        with self._lock:
            self.last = answer
            if answer.response_id:
                self._by_id[answer.response_id] = answer
                while len(self._by_id) > self.keep:
                    self._by_id.popitem(last=False)

    def get(self, response_id: str) -> PaidAnswer | None:
        with self._lock:
            return self._by_id.get(response_id)


def _target(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode()}"


def _is_paid(request: httpx.Request) -> bool:
    return request.method == "POST" and request.url.path.endswith(PAID_PATHS)


def _with_headers(request: httpx.Request, body: bytes, extra: dict[str, str]) -> httpx.Request:
    headers = httpx.Headers(request.headers)
    for name, value in extra.items():
        headers[name] = value
    return httpx.Request(
        request.method, request.url, headers=headers, content=body, extensions=request.extensions
    )


class _Verifier:
    def __init__(
        self,
        payer: PaymentStrategy,
        ledger: Ledger,
        strict: bool,
        expected_signers: frozenset[str] | None,
    ) -> None:
        self.payer, self.ledger, self.strict = payer, ledger, strict
        self.expected = expected_signers

    def answer(
        self, request: bytes, raw: bytes, headers: httpx.Headers, stream: bool
    ) -> PaidAnswer:
        answer = check_answer(
            request, raw, headers, stream=stream, method=self.payer.method,
            expected_signers=self.expected,
        )  # fmt: skip
        self.ledger.record(answer)
        return answer


class PayingAsyncTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        payer: PaymentStrategy,
        ledger: Ledger,
        *,
        strict: bool = True,
        expected_signers: frozenset[str] | None = None,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.v = _Verifier(payer, ledger, strict, expected_signers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not _is_paid(request):
            return await self.inner.handle_async_request(request)
        payer = self.v.payer
        body = await request.aread()
        target = _target(request.url)
        paid = await payer.prepay(target, body)
        response = await self.inner.handle_async_request(_with_headers(request, body, paid))
        if response.status_code == 402:
            await response.aread()
            await payer.on_receipt(target, None, False, paid)
            headers = await payer.on_challenge(target, body, response)
            if headers is None:
                return response
            await response.aclose()
            paid = headers
            response = await self.inner.handle_async_request(_with_headers(request, body, paid))
        if response.status_code != 200:
            await payer.on_receipt(target, None, False, paid)
            return response
        if "text/event-stream" in response.headers.get("content-type", ""):
            stream = _AsyncVerifiedStream(self, target, body, response, paid)
            return httpx.Response(200, headers=response.headers, stream=stream,
                                  extensions=response.extensions)  # fmt: skip
        raw = await response.aread()
        await response.aclose()
        answer = self.v.answer(body, raw, response.headers, False)
        await payer.on_receipt(target, answer.receipt, answer.verified, paid)
        if self.v.strict and not answer.verified:
            raise ReceiptError(answer)
        return httpx.Response(200, headers=response.headers, content=raw,
                              extensions=response.extensions)  # fmt: skip

    async def aclose(self) -> None:
        await self.inner.aclose()


class _AsyncVerifiedStream(httpx.AsyncByteStream):
    def __init__(
        self,
        t: PayingAsyncTransport,
        target: str,
        body: bytes,
        response: httpx.Response,
        paid: dict[str, str],
    ) -> None:
        self.t, self.target, self.body, self.response = t, target, body, response
        self.paid = paid

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = bytearray()
        done = False
        raw = self.response.stream
        assert isinstance(raw, httpx.AsyncByteStream)
        it = raw.__aiter__()
        async for chunk in it:
            seen += chunk
            if SSE_DONE in seen[-(len(chunk) + len(SSE_DONE)) :]:
                async for rest in it:  # the receipt comment
                    seen += rest
                    chunk += rest
                done = True
                await self._finish(bytes(seen))
            yield chunk
        if not done:
            await self._finish(bytes(seen))

    async def _finish(self, raw: bytes) -> None:
        answer = self.t.v.answer(self.body, raw, self.response.headers, True)
        await self.t.v.payer.on_receipt(self.target, answer.receipt, answer.verified, self.paid)
        if self.t.v.strict and not answer.verified:
            raise ReceiptError(answer)

    async def aclose(self) -> None:
        await self.response.aclose()


class LoopThread:
    """An event loop in a daemon thread: the sync client's way into the async core."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="mercato-sdk")  # fmt: skip
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


class PayingTransport(httpx.BaseTransport):
    """The sync twin: HTTP on the caller's thread, payment steps on :class:`LoopThread`."""

    def __init__(
        self,
        payer: PaymentStrategy,
        ledger: Ledger,
        runner: LoopThread,
        *,
        strict: bool = True,
        expected_signers: frozenset[str] | None = None,
        inner: httpx.BaseTransport | None = None,
    ) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.runner = runner
        self.v = _Verifier(payer, ledger, strict, expected_signers)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not _is_paid(request):
            return self.inner.handle_request(request)
        payer, run = self.v.payer, self.runner.run
        body = request.read()
        target = _target(request.url)
        paid = run(payer.prepay(target, body))
        response = self.inner.handle_request(_with_headers(request, body, paid))
        if response.status_code == 402:
            response.read()
            run(payer.on_receipt(target, None, False, paid))
            headers = run(payer.on_challenge(target, body, response))
            if headers is None:
                return response
            response.close()
            paid = headers
            response = self.inner.handle_request(_with_headers(request, body, paid))
        if response.status_code != 200:
            run(payer.on_receipt(target, None, False, paid))
            return response
        if "text/event-stream" in response.headers.get("content-type", ""):
            stream = _VerifiedStream(self, target, body, response, paid)
            return httpx.Response(200, headers=response.headers, stream=stream,
                                  extensions=response.extensions)  # fmt: skip
        raw = response.read()
        response.close()
        answer = self.v.answer(body, raw, response.headers, False)
        run(payer.on_receipt(target, answer.receipt, answer.verified, paid))
        if self.v.strict and not answer.verified:
            raise ReceiptError(answer)
        return httpx.Response(200, headers=response.headers, content=raw,
                              extensions=response.extensions)  # fmt: skip

    def close(self) -> None:
        self.inner.close()


class _VerifiedStream(httpx.SyncByteStream):
    def __init__(
        self,
        t: PayingTransport,
        target: str,
        body: bytes,
        response: httpx.Response,
        paid: dict[str, str],
    ) -> None:
        self.t, self.target, self.body, self.response = t, target, body, response
        self.paid = paid

    def __iter__(self) -> Iterator[bytes]:
        seen = bytearray()
        done = False
        raw = self.response.stream
        assert isinstance(raw, httpx.SyncByteStream)
        it = iter(raw)
        for chunk in it:
            seen += chunk
            if SSE_DONE in seen[-(len(chunk) + len(SSE_DONE)) :]:
                for rest in it:
                    seen += rest
                    chunk += rest
                done = True
                self._finish(bytes(seen))
            yield chunk
        if not done:
            self._finish(bytes(seen))

    def _finish(self, raw: bytes) -> None:
        answer = self.t.v.answer(self.body, raw, self.response.headers, True)
        payer = self.t.v.payer
        self.t.runner.run(payer.on_receipt(self.target, answer.receipt, answer.verified, self.paid))
        if self.t.v.strict and not answer.verified:
            raise ReceiptError(answer)

    def close(self) -> None:
        self.response.close()
