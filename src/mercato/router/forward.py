"""Forwarding with failover: whole JSON exchanges over :mod:`mercato.httpclient`, streams
over one pooled aiohttp session.

:meth:`Forwarder.complete` (JSON) and :meth:`Forwarder.open_stream` (SSE) try the
planned candidates in order: a candidate whose breaker refuses is skipped; connect
errors, timeouts, 5xx, 429, 404 (the model is not there after all) and, for operators,
a missing or invalid receipt move on to the next candidate, up to ``max_retries``
retries and within the total deadline. Any other 4xx is the client's own request and
goes back to it unchanged. A stream is committed once its first event has arrived:
nothing is retried after that. Every attempt feeds the upstream's stats and breaker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import orjson

from mercato.errors import MercatoError, Overloaded, Unavailable, UpstreamError
from mercato.httpclient import HTTPClient, HTTPClientError, target
from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, verify_receipt
from mercato.router.payer import Payer
from mercato.router.pricing import Estimate
from mercato.router.selection import Candidate, Offer
from mercato.router.stats import StatsBoard, UpstreamStats

Endpoint = Literal["chat", "completion"]
PATHS: dict[Endpoint, str] = {"chat": "/chat/completions", "completion": "/completions"}
RETRY_STATUSES = frozenset({404, 408, 429})
PASSED_HEADERS = ("content-type", "retry-after")
# The operator's own x402 headers, passed on to a client that pays the operator itself.
WALLET_PASSED_HEADERS = (*PASSED_HEADERS, "payment-required", "payment-response")
# The headers with which a client pays the operator directly (docs/protocols/payments.md).
WALLET_PAYMENT_HEADERS = (
    "x-mercato-spend-authorization",
    "x-mercato-channel-voucher",
    "payment-signature",
)
ATTEMPTS_HEADER = "X-Mercato-Attempts"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    max_retries: int = 2
    attempt_timeout_s: float = 60.0  # one attempt, to the whole body (JSON) or first event
    connect_timeout_s: float = 3.0
    total_timeout_s: float = 120.0  # all attempts of one request
    max_connections: int = 1024


@dataclass(slots=True)
class Attempt:
    upstream: str
    name: str
    outcome: str  # ok, connect_error, timeout, http_<status>, bad_receipt, client_error
    latency_s: float
    status: int | None = None


@dataclass(slots=True)
class Served:
    """A whole answer, or an upstream's own 4xx for the client (``status`` != 200)."""

    offer: Offer
    status: int
    body: bytes
    headers: dict[str, str]
    receipt: Receipt | None
    attempts: list[Attempt]
    latency_s: float


@dataclass(slots=True)
class OpenStream:
    """A stream whose first event has arrived; the caller reads the rest and must
    call :meth:`close` (and :meth:`finish` with the outcome)."""

    offer: Offer
    first: bytes
    events: AsyncIterator[bytes]
    attempts: list[Attempt]
    ttft_s: float
    started: float
    _resp: aiohttp.ClientResponse
    _done: Callable[[bool, float, float | None], None]
    _finished: bool = field(default=False)
    headers: dict[str, str] = field(default_factory=dict)  # upstream headers passed on
    # tells the router's payer the outcome (None when the router did not pay)
    _paid: Callable[[Receipt | None], Awaitable[None]] | None = None

    def finish(self, ok: bool) -> None:
        if not self._finished:
            self._finished = True
            self._done(ok, time.monotonic() - self.started, self.ttft_s)

    def close(self) -> None:
        self._resp.release()

    async def paid(self, receipt: Receipt | None) -> None:
        """The stream has ended (``receipt``: the operator's verified receipt, if any):
        tell the router's payer, if it paid this attempt. Never raises."""
        if self._paid is not None:
            report, self._paid = self._paid, None
            await report(receipt)


class RequestBodies:
    """The bytes sent to each upstream. Operators get the client's bytes unchanged (so
    that the receipt's request hash is the client's); providers get the body without
    Mercato's own fields and with their model name."""

    def __init__(self, raw: bytes, doc: dict[str, object]) -> None:
        self.raw = raw
        self._doc = doc
        self._cache: dict[str | None, bytes] = {}

    def for_offer(self, offer: Offer) -> bytes:
        if offer.kind == "operator":
            return self.raw
        body = self._cache.get(offer.upstream_model)
        if body is None:
            doc = {k: v for k, v in self._doc.items() if k not in ("mercato", "provider")}
            if offer.upstream_model:
                doc["model"] = offer.upstream_model
            body = self._cache[offer.upstream_model] = orjson.dumps(doc)
        return body


class Forwarder:
    def __init__(
        self,
        config: ForwardConfig,
        stats: StatsBoard,
        payer: Payer,
        provider_headers: Callable[[Offer], dict[str, str]] | None = None,
    ) -> None:
        self.config = config
        self.stats = stats
        self.payer = payer
        self._provider_headers = provider_headers or (lambda _: {})
        self._session: aiohttp.ClientSession | None = None  # streams
        self._http: HTTPClient | None = None  # whole JSON exchanges

    async def start(self) -> None:
        self._http = HTTPClient(
            max_connections=self.config.max_connections,
            connect_timeout_s=self.config.connect_timeout_s,
        )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.config.max_connections, limit_per_host=0, ttl_dns_cache=300
            ),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_s),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            # aiohttp offers gzip by default; the router reads the events it relays
            headers={"Accept-Encoding": "identity"},
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise UpstreamError("router not started")
        return self._session

    async def _headers(
        self, offer: Offer, estimate: Estimate, wallet: dict[str, str] | None
    ) -> tuple[dict[str, str], dict[str, str] | None]:
        """The attempt's headers, and the payer's own among them (None: the router's
        payer was not asked, so it is not told the outcome either)."""
        headers = {"Content-Type": "application/json"}
        paid: dict[str, str] | None = None
        if offer.kind == "provider":
            headers.update(self._provider_headers(offer))
        elif wallet is not None:  # the client pays the operator itself: no payment of ours
            headers.update(wallet)
        else:
            paid = await self.payer.payment_headers(offer, estimate)
            headers.update(paid)
        return headers, paid

    async def _report(
        self,
        offer: Offer,
        status: int,
        headers: Mapping[str, str],
        receipt: Receipt | None,
        paid: dict[str, str] | None,
    ) -> None:
        """Tell the payer an attempt's outcome, if it paid the attempt; never raises."""
        if paid is None:
            return
        try:
            await self.payer.on_response(offer, status, headers, receipt, paid)
        except Exception:
            log.exception("the payer failed on %s's answer", offer.name)

    def _plan(self, plan: list[Candidate]) -> AsyncIterator[tuple[Offer, float]]:
        """The offers to try with each attempt's timeout, honoring breakers, retries
        and the total deadline."""
        cfg = self.config
        deadline = time.monotonic() + cfg.total_timeout_s

        async def gen() -> AsyncIterator[tuple[Offer, float]]:
            tried = 0
            for cand in plan:
                if tried > cfg.max_retries:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if not self.stats.get(cand.offer.upstream).breaker.allow():
                    continue
                tried += 1
                yield cand.offer, min(cfg.attempt_timeout_s, left)

        return gen()

    def _attempt_done(self, offer: Offer, attempts: list[Attempt], started: float) -> _Done:
        return _Done(self.stats.get(offer.upstream), offer, attempts, started)

    async def complete(
        self,
        endpoint: Endpoint,
        plan: list[Candidate],
        bodies: RequestBodies,
        estimate: Estimate,
        wallet: dict[str, str] | None = None,
    ) -> Served:
        """``wallet``: the client's own payment headers for the operator (possibly none,
        to get the operator's 402 challenge); the router's payer is then not asked."""
        attempts: list[Attempt] = []
        keep = PASSED_HEADERS if wallet is None else WALLET_PASSED_HEADERS
        last_error: MercatoError | None = None
        async for offer, timeout in self._plan(plan):
            started = time.monotonic()
            done = self._attempt_done(offer, attempts, started)
            body = bodies.for_offer(offer)
            if self._http is None:
                raise UpstreamError("router not started")
            paid: dict[str, str] | None = None
            try:
                headers, paid = await self._headers(offer, estimate, wallet)
                answer = await self._http.post(
                    target(offer.base_url + PATHS[endpoint]), body, headers.items(), timeout
                )
            except TimeoutError:
                done("timeout", False, None)
                last_error = UpstreamError(f"{offer.name}: timed out", code="upstream_timeout")
                continue
            except (HTTPClientError, ValueError) as exc:  # ValueError: not an http(s) URL
                done("connect_error", False, None)
                last_error = UpstreamError(f"{offer.name}: {exc}", code="upstream_unreachable")
                continue
            data, status, resp_headers = answer.body, answer.status, answer.headers
            if status == 200:
                receipt: Receipt | None = None
                if offer.kind == "operator":
                    receipt, reason = check_receipt(
                        offer, resp_headers.get(RECEIPT_HEADER.lower()), bodies.raw, data
                    )
                    await self._report(offer, status, resp_headers, receipt, paid)
                    if receipt is None:
                        done("bad_receipt", False, status)
                        last_error = UpstreamError(
                            f"{offer.name}: receipt rejected ({reason})", code="bad_receipt"
                        )
                        continue
                done("ok", True, status)
                passed = {k: v for k, v in resp_headers.items() if k in keep}
                if receipt is not None:
                    passed[RECEIPT_HEADER] = resp_headers[RECEIPT_HEADER.lower()]
                return Served(
                    offer, 200, data, passed, receipt, attempts, time.monotonic() - started
                )
            await self._report(offer, status, resp_headers, None, paid)
            if status in RETRY_STATUSES or status >= 500:
                done(f"http_{status}", False, status)
                last_error = _upstream_status_error(offer, status, data)
                continue
            done("client_error", None, status)
            passed = {k: v for k, v in resp_headers.items() if k in keep}
            return Served(offer, status, data, passed, None, attempts, time.monotonic() - started)
        raise _exhausted(attempts, last_error)

    async def open_stream(
        self,
        endpoint: Endpoint,
        plan: list[Candidate],
        bodies: RequestBodies,
        estimate: Estimate,
        wallet: dict[str, str] | None = None,
    ) -> OpenStream | Served:
        """The first upstream whose stream starts; an upstream's own 4xx as Served."""
        attempts: list[Attempt] = []
        keep = PASSED_HEADERS if wallet is None else WALLET_PASSED_HEADERS
        last_error: MercatoError | None = None
        async for offer, timeout in self._plan(plan):
            started = time.monotonic()
            done = self._attempt_done(offer, attempts, started)
            resp: aiohttp.ClientResponse | None = None
            paid: dict[str, str] | None = None
            try:
                headers, paid = await self._headers(offer, estimate, wallet)
                resp = await self.session.post(
                    offer.base_url + PATHS[endpoint],
                    data=bodies.for_offer(offer),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        sock_connect=self.config.connect_timeout_s,
                        sock_read=self.config.attempt_timeout_s,
                    ),
                )
                status = resp.status
                if status != 200:
                    data = await resp.read()
                    resp.release()
                    await self._report(offer, status, resp.headers, None, paid)
                    if status in RETRY_STATUSES or status >= 500:
                        done(f"http_{status}", False, status)
                        last_error = _upstream_status_error(offer, status, data)
                        continue
                    done("client_error", None, status)
                    hdrs = {k.lower(): v for k, v in resp.headers.items()}
                    passed = {k: v for k, v in hdrs.items() if k in keep}
                    elapsed = time.monotonic() - started
                    return Served(offer, status, data, passed, None, attempts, elapsed)
                events = sse_events(resp.content)
                first = await _first_event(events, timeout)
            except TimeoutError:
                if resp is not None:
                    resp.close()
                done("timeout", False, None)
                last_error = UpstreamError(f"{offer.name}: timed out", code="upstream_timeout")
                continue
            except (aiohttp.ClientError, StopAsyncIteration) as exc:
                if resp is not None:
                    resp.close()
                done("connect_error", False, None)
                last_error = UpstreamError(f"{offer.name}: {exc!r}", code="upstream_unreachable")
                continue
            ttft = time.monotonic() - started
            opened = OpenStream(
                offer, first, events, attempts, ttft, started, resp, _stream_done(done)
            )
            if paid is not None:
                opened._paid = _stream_paid(self, offer, resp.headers, paid)
            if wallet is not None:
                opened.headers = {
                    k.lower(): v for k, v in resp.headers.items() if k.lower() in keep
                }
                opened.headers.pop("content-type", None)
            return opened
        raise _exhausted(attempts, last_error)


class _Done:
    """Records one attempt's outcome: stats, breaker, in-flight count."""

    def __init__(
        self, stats: UpstreamStats, offer: Offer, attempts: list[Attempt], started: float
    ) -> None:
        self.stats, self.offer, self.attempts, self.started = stats, offer, attempts, started
        stats.inflight += 1

    def __call__(
        self, outcome: str, ok: bool | None, status: int | None, ttft: float | None = None
    ) -> None:
        latency = time.monotonic() - self.started
        self.stats.inflight -= 1
        self.attempts.append(
            Attempt(self.offer.upstream, self.offer.name, outcome, latency, status)
        )
        if ok is None:
            self.stats.breaker.release()
        else:
            self.stats.record_attempt(ok, latency, ttft)


def _stream_paid(
    forwarder: Forwarder, offer: Offer, headers: Mapping[str, str], paid: dict[str, str]
) -> Callable[[Receipt | None], Awaitable[None]]:
    async def report(receipt: Receipt | None) -> None:
        await forwarder._report(offer, 200, headers, receipt, paid)

    return report


def _stream_done(done: _Done) -> Callable[[bool, float, float | None], None]:
    def finished(ok: bool, latency: float, ttft: float | None) -> None:
        done("ok" if ok else "stream_failed", ok, 200, ttft)

    return finished


async def _first_event(events: AsyncIterator[bytes], limit_s: float) -> bytes:
    async with asyncio.timeout(limit_s):
        return await anext(events)


async def sse_events(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """SSE events exactly as received, each with its terminating blank line."""
    lines: list[bytes] = []
    async for line in content:
        lines.append(line)
        if line in (b"\n", b"\r\n"):
            yield b"".join(lines)
            lines = []
    if lines:
        yield b"".join(lines)


def check_receipt(
    offer: Offer, header: str | None, request: bytes, response: bytes
) -> tuple[Receipt | None, str]:
    """The operator's receipt if it signs exactly these bytes with an on-chain signer."""
    if header is None:
        return None, "missing"
    try:
        receipt = Receipt.from_json(header)
    except ValueError:
        return None, "malformed"
    return verify_signed(offer, receipt, request, response)


def verify_signed(
    offer: Offer, receipt: Receipt, request: bytes, response: bytes
) -> tuple[Receipt | None, str]:
    signers = {s.lower() for s in offer.signers}
    if receipt.signing_address.lower() not in signers:
        return None, "signer_not_registered"
    # The ECDSA signature binds the answer to the on-chain signer; the Ed25519 one
    # (whose key is not on-chain) is left to the client, who gets the whole receipt.
    result = verify_receipt(receipt, request, response, check_ed25519=False)
    return (receipt, "ok") if result.ok else (None, result.reason)


def _upstream_status_error(offer: Offer, status: int, body: bytes) -> MercatoError:
    message = f"{offer.name} answered {status}: {body[:200].decode('utf-8', 'replace')}"
    if status == 429:
        return Overloaded(message, retry_after=1)
    return UpstreamError(message, code="upstream_error")


def _exhausted(attempts: list[Attempt], last: MercatoError | None) -> MercatoError:
    if not attempts:
        return Unavailable(
            "no upstream can take this request now (circuits open); retry shortly",
            code="no_upstream_available",
            headers={"Retry-After": "1"},
        )
    tried = ", ".join(f"{a.name}: {a.outcome}" for a in attempts)
    err: MercatoError
    if isinstance(last, Overloaded):
        err = Overloaded(f"all upstreams busy ({tried})", retry_after=1)
    else:
        err = UpstreamError(f"every upstream failed ({tried})", code="upstream_failed")
    err.headers[ATTEMPTS_HEADER] = str(len(attempts))
    return err
