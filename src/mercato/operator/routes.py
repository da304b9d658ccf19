"""HTTP handlers of the operator node. Each one parses, delegates and answers."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.background import BackgroundTask

from mercato.attestation import (
    build_attestation_report,
    ensure_signer_served,
    parse_nonce,
    parse_signing_algo,
)
from mercato.errors import InvalidRequest, NotFound, PayloadTooLarge
from mercato.operator.backends.base import Endpoint, StreamEvent, Usage
from mercato.operator.signed_stream import SignedEventStream
from mercato.operator.state import OperatorState
from mercato.payments.pricing import estimate
from mercato.payments.service import Payment
from mercato.payments.x402 import PAYMENT_RESPONSE
from mercato.protocol.openai import ChatCompletionRequest, CompletionRequest, parse_body
from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, sha256_hex

router = APIRouter()
SETTLEMENT_BODY_LIMIT = 4_096  # a settlement is ~500 bytes of JSON


def _state(request: Request) -> OperatorState:
    state: OperatorState = request.app.state.operator
    return state


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _generate(request, "chat")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _generate(request, "completion")


async def _generate(request: Request, endpoint: Endpoint) -> Response:
    state = _state(request)
    started = time.monotonic()
    raw = await read_body(request, state.settings.max_body_bytes)
    body: ChatCompletionRequest | CompletionRequest
    if endpoint == "chat":
        body, _ = parse_body(raw, ChatCompletionRequest)
    else:
        body, _ = parse_body(raw, CompletionRequest)
    if body.model not in state.backend.models():
        raise NotFound(
            f"The model `{body.model}` does not exist on this operator",
            code="model_not_found",
            param="model",
        )
    request_sha256 = sha256_hex(raw)
    m = state.metrics
    stream_label = "true" if body.stream else "false"
    payment = await _authorize(state, request, endpoint, body)
    extra_headers = (
        {PAYMENT_RESPONSE: payment.extra["x402"]} if payment and "x402" in payment.extra else {}
    )

    def record(usage: Usage | None, status: str) -> None:
        m.requests.labels(endpoint, stream_label, status).inc()
        m.latency.labels(endpoint, stream_label).observe(time.monotonic() - started)
        if usage is not None:
            m.tokens.labels("prompt").inc(usage.prompt_tokens)
            m.tokens.labels("completion").inc(usage.completion_tokens)

    async def settle(usage: Usage | None, response_id: str) -> dict[str, Any] | None:
        """Persist what was served before the response finishes; its signed summary."""
        if payment is None or state.payments is None:
            return None
        prompt = usage.prompt_tokens if usage else payment.extra.get("prompt_tokens", 0)
        completion = usage.completion_tokens if usage else 0
        return (await state.payments.capture(payment, prompt, completion, response_id)).to_dict()

    try:
        if not body.stream:
            completion = await state.backend.complete(endpoint, body, raw)
        else:
            events = state.backend.stream(endpoint, body, raw)
            first = await anext(events)  # errors before the first byte become JSON errors
    except BaseException:
        if payment is not None and state.payments is not None:
            await state.payments.release(payment)
        raise

    if not body.stream:
        charged = await settle(completion.usage, completion.id)
        receipt = state.signer.sign(
            completion.id, request_sha256, sha256_hex(completion.body), charged
        )

        def delivered() -> None:
            state.receipts.put(receipt)
            m.receipts.inc()
            record(completion.usage, "200")

        return Response(
            completion.body,
            media_type="application/json",
            headers={RECEIPT_HEADER: receipt.to_json(), **extra_headers},
            background=BackgroundTask(delivered),
        )

    m.ttft.labels(endpoint).observe(time.monotonic() - started)

    async def finalize(done: StreamEvent, response_sha256: str) -> Receipt:
        charged = await settle(done.usage, done.id or "")
        receipt = state.signer.sign(done.id or "", request_sha256, response_sha256, charged)
        state.receipts.put(receipt)
        m.receipts.inc()
        record(done.usage, "200")
        return receipt

    async def abort(sent_tokens: int, last: StreamEvent | None, outcome: str) -> None:
        """Cut off: the payer pays for the prompt and the tokens generated and sent, or
        nothing when no token was sent."""
        m.aborted.labels(outcome).inc()
        record(last.usage if last else None, outcome)
        if payment is not None and state.payments is not None:
            if sent_tokens == 0:
                await state.payments.release(payment)
                return
            prompt = int(payment.extra.get("prompt_tokens", 0))
            await state.payments.capture(
                payment, prompt, sent_tokens, last.id if last and last.id else ""
            )

    return SignedEventStream(first, events, finalize, abort, headers=extra_headers)


async def _authorize(
    state: OperatorState,
    request: Request,
    endpoint: Endpoint,
    body: ChatCompletionRequest | CompletionRequest,
) -> Payment | None:
    """The request's accepted payment (None: free), or a 402 with the reason."""
    payments = state.payments
    if payments is None or not payments.paid:
        return None
    price = state.prices.get(body.model)
    if price is None:
        raise NotFound(f"no on-chain price for `{body.model}`", code="model_not_priced")
    if body.token_limit() is None:
        body.max_tokens = state.backend.default_max_tokens
    limit = body.token_limit() or state.backend.default_max_tokens
    est = estimate(price, state.backend.prompt_tokens(endpoint, body), limit)
    payment = await payments.authorize(request.headers, price, est, str(request.url))
    if payment is not None:
        payment.extra["prompt_tokens"] = est.prompt_tokens
    return payment


@router.post("/v1/payments/settlements")
async def payment_settlements(request: Request) -> Response:
    """A payer's spend settlement of authorizations it already paid requests with
    (docs/protocols/spendauth.md, "Operator endpoint")."""
    state = _state(request)
    if state.payments is None or not state.payments.paid:
        raise NotFound("this operator takes no payments")
    body = await read_body(request, SETTLEMENT_BODY_LIMIT)
    return json_response(await state.payments.offer_settlement(body))


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    state = _state(request)
    data = [
        {
            "id": mid,
            "object": "model",
            "created": state.started_at,
            "owned_by": state.signer.signing_address,
        }
        for mid in state.backend.models()
    ]
    return json_response({"object": "list", "data": data})


@router.get("/v1/signature/{response_id}")
async def signature(request: Request, response_id: str, signing_algo: str = "ecdsa") -> Response:
    if signing_algo not in ("ecdsa", "ed25519"):
        raise InvalidRequest(
            "signing_algo must be ecdsa or ed25519",
            code="invalid_signing_algo",
            param="signing_algo",
        )
    receipt = await _state(request).receipts.get(response_id)
    if receipt is None:
        raise NotFound(
            f"no signature for id {response_id!r} (unknown or expired)", code="signature_not_found"
        )
    return json_response(receipt.signature_body("ecdsa" if signing_algo == "ecdsa" else "ed25519"))


@router.get("/v1/attestation/report")
async def attestation_report(
    request: Request,
    nonce: str | None = None,
    signing_algo: str | None = None,
    signing_address: str | None = None,
) -> Response:
    state = _state(request)
    algo = parse_signing_algo(signing_algo)
    signer = state.signer
    address = signer.signing_address if algo == "ecdsa" else signer.ed25519_public_key
    public_key = signer.ecdsa_public_key if algo == "ecdsa" else signer.ed25519_public_key
    ensure_signer_served(signing_address, algo, address)
    report = await build_attestation_report(
        state.attestation, algo, address, public_key, parse_nonce(nonce)
    )
    return json_response(report)


@router.get("/health")
async def health(request: Request) -> Response:
    state = _state(request)
    ready = await state.backend.ready()
    doc = {
        "status": "ok" if ready else "starting",
        "backend": state.backend.kind,
        "models": state.backend.models(),
        "signing_address": state.signer.signing_address,
        "ed25519_public_key": state.signer.ed25519_public_key,
        "attestation": state.attestation.kind,
    }
    return json_response(doc, 200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state = _state(request)
    admission = getattr(state.backend, "admission", None)
    if admission is not None:
        state.metrics.queue_waiting.set(admission.waiting)
        state.metrics.queue_busy.set(admission.busy)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
