"""A client with a wallet pays the chosen operator itself through the router: the router
passes the operator's 402 challenge on with the operator's address, then forwards the
client's signed payment unchanged (no API key, no credits, no payment of its own).

A real paid operator (the real small model, registered on anvil, settling every
second) behind an in-process router whose billing requires API keys."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest
from eth_account.signers.local import LocalAccount

from mercato.chain.client import ChainClient
from mercato.chain.manifest import Manifest
from mercato.client.payments import (
    EscrowRef,
    NonceAllocator,
    sign_spend_authorization,
    sign_voucher,
)
from mercato.payments.wire import SPEND_AUTH_HEADER, VOUCHER_HEADER
from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, verify_receipt
from tests.integration.conftest import MODEL
from tests.integration.payments.conftest import (  # noqa: F401 - fixtures
    PRICE,
    PaidOperator,
    paid_operator,
    payer,
)
from tests.integration.router.conftest import router_settings, run_router

pytestmark = [pytest.mark.model, pytest.mark.chain]


def body(i: int = 0) -> bytes:
    doc = {
        "model": MODEL,
        "max_tokens": 8,
        "temperature": 0,
        "messages": [{"role": "user", "content": f"Say the number {i}."}],
    }
    return orjson.dumps(doc)


@pytest.fixture
async def router(paid_operator: PaidOperator, tmp_path: Path) -> AsyncIterator[str]:  # noqa: F811
    op = paid_operator
    static = {
        "address": op.address,
        "slug": "paid",
        "endpoint": op.url,
        "signers": [op.address],
        "models": [MODEL],
        "price_in_per_m": PRICE.input_per_m,
        "price_out_per_m": PRICE.output_per_m,
    }
    settings = router_settings(
        f"sqlite:///{tmp_path / 'router.db'}",
        tmp_path,
        operators=[static],
        billing={"auth": "required"},
        routing={"attempt_timeout_s": 60.0},  # the real model, on a busy machine
    )
    async with run_router(settings) as url:
        yield url


async def post(router: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as c:
        return await c.post(
            f"{router}/v1/chat/completions",
            content=raw,
            headers={"Content-Type": "application/json", **headers},
        )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.3)


async def test_challenge_then_spend_authorization_through_the_router(
    router: str,
    paid_operator: PaidOperator,  # noqa: F811
    payer: LocalAccount,  # noqa: F811
    chain: ChainClient,
) -> None:
    op = paid_operator
    raw = body(1)
    assert (await post(router, raw, {})).status_code == 401  # no key, no wallet

    # 1. Ask for the operator's price: its 402 challenge, with whom to pay.
    resp = await post(router, raw, {"X-Mercato-Payment": "wallet"})
    assert resp.status_code == 402, resp.text
    assert resp.json()["error"]["code"] == "payment_required"
    assert resp.headers["X-Mercato-Operator"] == op.address
    assert resp.headers["X-Mercato-Served-By"] == "paid"
    challenge = json.loads(base64.b64decode(resp.headers["PAYMENT-REQUIRED"]))
    spendauth = {a["scheme"]: a for a in challenge["accepts"]}["mercato-spendauth"]
    assert spendauth["payTo"] == op.address
    ceiling = int(spendauth["amount"])
    assert ceiling > 0

    # 2. Sign for that operator and that price, pin the operator, retry.
    extra = spendauth["extra"]
    ref = EscrowRef(int(extra["chainId"]), extra["escrow"])
    escrow_before = await chain.escrow.balance_of(payer.address)
    operator_before = await chain.token.balance_of(op.address)
    signed = sign_spend_authorization(
        payer, ref, spendauth["payTo"], ceiling, NonceAllocator().next()
    )
    pin = {"X-Mercato-Operator": resp.headers["X-Mercato-Operator"]}
    resp = await post(router, raw, {SPEND_AUTH_HEADER: signed.encode(), **pin})
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Mercato-Payment"] == "wallet"
    assert resp.headers["X-Mercato-Cost"] == "0"  # no credits
    receipt = Receipt.from_json(resp.headers[RECEIPT_HEADER])
    assert receipt.signing_address.lower() == op.address.lower()
    assert verify_receipt(receipt, raw, resp.content).ok
    assert receipt.payment is not None and receipt.payment["method"] == "spendauth"
    usage = resp.json()["usage"]
    charged = int(receipt.payment["charged"])
    assert charged == PRICE.cost(usage["prompt_tokens"], usage["completion_tokens"]) > 0
    assert charged <= ceiling

    async def settled() -> bool:
        return await chain.token.balance_of(op.address) == operator_before + charged

    await eventually(settled)
    assert await chain.escrow.balance_of(payer.address) == escrow_before - charged


async def test_a_wallet_payment_must_pin_its_operator(
    router: str,
    paid_operator: PaidOperator,  # noqa: F811
    payer: LocalAccount,  # noqa: F811
) -> None:
    op = paid_operator
    signed = sign_spend_authorization(payer, op.ref, op.address, 50_000, NonceAllocator().next())
    resp = await post(router, body(), {SPEND_AUTH_HEADER: signed.encode()})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "operator_pin_required"
    resp = await post(router, body(), {"X-Mercato-Payment": "bogus"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_payment_mode"


async def test_x402_exact_through_the_router_with_the_official_sdk(
    router: str,
    paid_operator: PaidOperator,  # noqa: F811
    payer: LocalAccount,  # noqa: F811
    chain: ChainClient,
    manifest: Manifest,
) -> None:
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient
    from x402.mechanisms.evm.exact import ExactEvmScheme

    op = paid_operator
    client = x402Client()
    client.register(f"eip155:{manifest.chain_id}", ExactEvmScheme(signer=payer))
    client.set_spend_controls(False)
    wallet_before = await chain.token.balance_of(payer.address)
    operator_before = await chain.token.balance_of(op.address)
    headers = {"X-Mercato-Payment": "wallet", "X-Mercato-Operator": op.address}
    raw = body(2)
    async with x402HttpxClient(client, timeout=60, headers=headers) as http:
        resp = await http.post(
            f"{router}/v1/chat/completions",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Mercato-Operator"] == op.address
    receipt = Receipt.from_json(resp.headers[RECEIPT_HEADER])
    assert verify_receipt(receipt, raw, resp.content).ok
    assert receipt.payment is not None and receipt.payment["method"] == "x402"
    charged = int(receipt.payment["charged"])
    settle = json.loads(base64.b64decode(resp.headers["PAYMENT-RESPONSE"]))
    assert settle["success"] is True and settle["payer"] == payer.address

    async def settled() -> bool:
        return await chain.token.balance_of(op.address) == operator_before + charged

    await eventually(settled)
    assert await chain.token.balance_of(payer.address) == wallet_before - charged


async def test_a_streamed_wallet_request_pinned_by_slug(
    router: str,
    paid_operator: PaidOperator,  # noqa: F811
    payer: LocalAccount,  # noqa: F811
) -> None:
    op = paid_operator
    signed = sign_spend_authorization(payer, op.ref, op.address, 50_000, NonceAllocator().next())
    raw = orjson.dumps({**orjson.loads(body(3)), "stream": True})
    headers = {SPEND_AUTH_HEADER: signed.encode(), "X-Mercato-Operator": "paid"}
    resp = await post(router, raw, headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Mercato-Operator"] == op.address
    text = resp.text
    assert text.count("data: [DONE]") == 1
    receipt_line = next(ln for ln in text.splitlines() if ln.startswith(": mercato-receipt "))
    receipt = Receipt.from_json(receipt_line[len(": mercato-receipt ") :])
    assert receipt.payment is not None and receipt.payment["method"] == "spendauth"
    assert ': mercato-cost {"cost":0' in text


async def test_channel_vouchers_through_the_router(
    router: str,
    paid_operator: PaidOperator,  # noqa: F811
    payer: LocalAccount,  # noqa: F811
    chain: ChainClient,
) -> None:
    op = paid_operator
    me = chain.for_account(payer)
    channel_id, _ = await me.escrow.open_channel(op.address, 10**6, os.urandom(32))
    operator_before = await chain.token.balance_of(op.address)
    cumulative, total = 0, 0
    for i in range(3):
        cumulative += 50_000  # each voucher covers this request's ceiling, and more
        voucher = sign_voucher(payer, op.ref, channel_id, cumulative)
        raw = body(10 + i)
        headers = {VOUCHER_HEADER: voucher.encode(), "X-Mercato-Operator": "paid"}
        resp = await post(router, raw, headers)
        assert resp.status_code == 200, resp.text
        assert resp.headers["X-Mercato-Payment"] == "wallet"
        assert resp.headers["X-Mercato-Cost"] == "0"  # no credits
        receipt = Receipt.from_json(resp.headers[RECEIPT_HEADER])
        assert verify_receipt(receipt, raw, resp.content).ok
        assert receipt.payment is not None and receipt.payment["method"] == "channel"
        total += int(receipt.payment["charged"])
        assert int(receipt.payment["channel_consumed"]) == total

    # A replayed voucher (not above what the channel has consumed) is refused, through
    # the router, with the operator's reason and without failover.
    resp = await post(router, body(20), {VOUCHER_HEADER: voucher.encode(), **headers})
    assert resp.status_code == 402, resp.text
    assert resp.headers["X-Mercato-Attempts"] == "1"

    async def settled() -> bool:
        return (await chain.escrow.channels(channel_id)).claimed == total

    await eventually(settled)  # the operator claims exactly the metered total
    # (other tests' spend authorizations may settle to the same operator meanwhile)
    assert await chain.token.balance_of(op.address) >= operator_before + total
