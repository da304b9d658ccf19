"""The SDK's paying transport against an in-memory operator (an httpx handler that
speaks the real wire formats and signs real receipts): learn the terms from a 402,
pay, verify JSON and streamed answers, refuse tampered ones."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import openai
import pytest
from eth_account import Account

from mercato.client.paying import SpendAuthPayment, cost_bound, parse_terms
from mercato.client.transport import (
    Ledger,
    LoopThread,
    PayingAsyncTransport,
    PayingTransport,
    ReceiptError,
)
from mercato.crypto.keystore import SigningKeys
from mercato.crypto.signers import EcdsaSigner, Ed25519Signer
from mercato.operator.receipts import ReceiptSigner
from mercato.payments.wire import SPEND_AUTH_HEADER, SignedSpendAuthorization
from mercato.protocol.receipts import RECEIPT_HEADER, sha256_hex

ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
KEYS = SigningKeys(EcdsaSigner.from_bytes(b"\x01" * 32), Ed25519Signer.from_seed(b"\x02" * 32))
OPERATOR = KEYS.ecdsa.address
CEILING = 104  # 20 prompt tokens at 2/M + 8 output tokens at 8/M, in base units


def challenge(reason: str = "payment_required", ceiling: int = CEILING) -> str:
    doc = {
        "x402Version": 2,
        "error": reason,
        "accepts": [
            {"scheme": "exact", "network": "eip155:31337", "amount": str(ceiling)},
            {
                "scheme": "mercato-spendauth",
                "network": "eip155:31337",
                "payTo": OPERATOR,
                "asset": "0x" + "11" * 20,
                "amount": str(ceiling),
                "extra": {
                    "escrow": ESCROW,
                    "chainId": 31337,
                    "pricing": {
                        "inputPerMillion": "2000000",
                        "outputPerMillion": "8000000",
                        "promptTokens": 20,
                        "maxCompletionTokens": 8,
                    },
                },
            },
        ],
    }
    return base64.b64encode(json.dumps(doc).encode()).decode()


class Operator:
    """Answers 402 without a valid spend authorization; signs what it sends."""

    def __init__(self, tamper: bool = False) -> None:
        self.tamper = tamper
        self.ceiling = CEILING
        self.challenges = 0
        self.paid: list[SignedSpendAuthorization] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        header = request.headers.get(SPEND_AUTH_HEADER)
        signed = SignedSpendAuthorization.decode(header) if header else None
        if signed is None or signed.auth.max_amount < self.ceiling:
            self.challenges += 1
            reason = "payment_required" if signed is None else "max_below_estimate"
            headers = {"PAYMENT-REQUIRED": challenge(reason, self.ceiling)}
            return httpx.Response(402, headers=headers, json={"error": {"code": reason}})
        assert signed.auth.operator.lower() == OPERATOR.lower()
        self.paid.append(signed)
        payment = {"method": "spendauth", "charged": "123", "payer": signed.auth.payer}
        doc: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.paid)}", "object": "chat.completion", "created": 1,
            "model": "m", "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hi"}}],
        }  # fmt: skip
        stream = json.loads(body).get("stream")
        if stream:
            delta = {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}
            chunk = {"id": doc["id"], "object": "chat.completion.chunk", "created": 1,
                     "model": "m", "choices": [delta]}  # fmt: skip
            signed_bytes = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
        else:
            signed_bytes = json.dumps(doc).encode()
        receipt = ReceiptSigner(KEYS).sign(
            doc["id"], sha256_hex(body), sha256_hex(signed_bytes), payment
        )
        sent = signed_bytes.replace(b"hi", b"ho") if self.tamper else signed_bytes
        if stream:
            sent += b": mercato-receipt " + receipt.to_json().encode() + b"\n\n"
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sent)
        return httpx.Response(200, content=sent, headers={
            "content-type": "application/json", RECEIPT_HEADER: receipt.to_json()})  # fmt: skip


def make_async(op: Operator, strict: bool = True) -> tuple[openai.AsyncOpenAI, Ledger]:
    ledger = Ledger()
    payer = SpendAuthPayment(Account.create())
    transport = PayingAsyncTransport(payer, ledger, strict=strict, inner=httpx.MockTransport(op))
    http = httpx.AsyncClient(transport=transport)
    client = openai.AsyncOpenAI(base_url="http://op.test/v1", api_key="x", max_retries=0,
                                http_client=http)  # type: ignore[arg-type]  # fmt: skip
    return client, ledger


ASK: Any = [{"role": "user", "content": "hello"}]


async def test_learns_terms_from_the_402_then_pays_up_front() -> None:
    op = Operator()
    client, ledger = make_async(op)
    for _ in range(3):
        reply = await client.chat.completions.create(model="m", messages=ASK, max_tokens=8)
        assert reply.choices[0].message.content == "hi"
        answer = ledger.get(reply.id)
        assert answer is not None and answer.verified and answer.cost == 123
        assert answer.operator == OPERATOR and answer.method == "spendauth"
    assert op.challenges == 1 and len(op.paid) == 3
    assert len({p.auth.nonce for p in op.paid}) == 3  # a fresh authorization each time
    op.ceiling = 50_000  # a dearer estimate than the client's bound: one more 402, paid
    reply = await client.chat.completions.create(model="m", messages=ASK, max_tokens=8)
    assert op.challenges == 2 and op.paid[-1].auth.max_amount == 50_000


async def test_streams_are_verified_from_the_receipt_comment() -> None:
    op = Operator()
    client, ledger = make_async(op)
    stream = await client.chat.completions.create(model="m", messages=ASK, stream=True)
    ids = [chunk.id async for chunk in stream]
    answer = ledger.last
    assert answer is not None and answer.stream and answer.verified
    assert answer.response_id == ids[0]


async def test_a_tampered_answer_is_refused_or_flagged() -> None:
    client, _ = make_async(Operator(tamper=True))
    with pytest.raises(ReceiptError, match="response_hash_mismatch"):
        await client.chat.completions.create(model="m", messages=ASK)
    lenient, ledger = make_async(Operator(tamper=True), strict=False)
    reply = await lenient.chat.completions.create(model="m", messages=ASK)
    answer = ledger.get(reply.id)
    assert answer is not None and not answer.verified
    assert answer.reason == "response_hash_mismatch"
    with pytest.raises(ReceiptError):
        stream = await client.chat.completions.create(model="m", messages=ASK, stream=True)
        async for _ in stream:
            pass


def test_the_sync_transport_pays_the_same_way() -> None:
    op = Operator()
    ledger, runner = Ledger(), LoopThread()
    try:
        payer = SpendAuthPayment(Account.create())
        transport = PayingTransport(payer, ledger, runner, inner=httpx.MockTransport(op))
        client = openai.OpenAI(base_url="http://op.test/v1", api_key="x", max_retries=0,
                               http_client=httpx.Client(transport=transport))  # type: ignore[arg-type]  # fmt: skip
        reply = client.chat.completions.create(model="m", messages=ASK)
        assert ledger.get(reply.id) is not None and ledger.last and ledger.last.verified
        chunks = list(client.chat.completions.create(model="m", messages=ASK, stream=True))
        assert chunks and ledger.last.stream and ledger.last.verified
    finally:
        runner.close()


def test_terms_and_cost_bound() -> None:
    terms = parse_terms(challenge())
    assert terms is not None and terms.operator == OPERATOR and terms.chain_id == 31337
    assert terms.amount == CEILING and terms.max_completion_tokens == 8
    body = json.dumps({"messages": ASK, "max_tokens": 100}).encode()
    bound = cost_bound(terms, body)
    # (2 * len + 512) prompt tokens at 2/M and 100 output tokens at 8/M, rounded up
    assert bound == -(-((2 * len(body) + 512) * 2_000_000 + 100 * 8_000_000) // 1_000_000)
    assert parse_terms("not base64!") is None and parse_terms(None) is None
