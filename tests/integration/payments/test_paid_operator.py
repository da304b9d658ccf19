"""Paying an operator on a real chain (anvil) with the real model: every path settles
exactly the metered cost; every attack gets 402 with its reason and nothing is
generated; a SIGKILL between serving and settling loses nothing and pays once."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest
from eth_account import Account
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
from mercato.protocol.eip712 import transfer_with_authorization_typed_data
from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, verify_receipt
from tests.helpers import free_port
from tests.integration.conftest import MODEL, launch_operator
from tests.integration.payments.conftest import PRICE, PaidOperator, paid_env, prepare_operator

pytestmark = [pytest.mark.model, pytest.mark.chain]
GENEROUS = 50_000  # base units: far above any request's ceiling here


def body(i: int = 0, **extra: object) -> bytes:
    doc = {
        "model": MODEL,
        "max_tokens": 8,
        "temperature": 0,
        "messages": [{"role": "user", "content": f"Say the number {i}."}],
        **extra,
    }
    return orjson.dumps(doc)


async def post(op: PaidOperator, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as c:
        return await c.post(
            f"{op.url}/v1/chat/completions",
            content=raw,
            headers={"Content-Type": "application/json", **headers},
        )


def charged(raw: bytes, resp: httpx.Response, method: str) -> int:
    """The receipt's signed charge, checked against the usage and the signatures."""
    assert resp.status_code == 200, resp.text
    receipt = Receipt.from_json(resp.headers[RECEIPT_HEADER])
    assert verify_receipt(receipt, raw, resp.content).ok
    assert receipt.payment is not None and receipt.payment["method"] == method
    usage = resp.json()["usage"]
    amount = int(receipt.payment["charged"])
    if method != "x402":  # x402 "exact" pays the ceiling up front
        assert amount == PRICE.cost(usage["prompt_tokens"], usage["completion_tokens"]) > 0
    return amount


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.3)


async def test_spend_authorizations(
    paid_operator: PaidOperator, payer: LocalAccount, chain: ChainClient
) -> None:
    op = paid_operator
    escrow_before = await chain.escrow.balance_of(payer.address)
    operator_before = await chain.token.balance_of(op.address)
    nonces, total = NonceAllocator(), 0
    for i in range(5):
        signed = sign_spend_authorization(payer, op.ref, op.address, GENEROUS, nonces.next())
        raw = body(i)
        total += charged(
            raw, await post(op, raw, {SPEND_AUTH_HEADER: signed.encode()}), "spendauth"
        )

    async def settled() -> bool:
        return await chain.token.balance_of(op.address) == operator_before + total

    await eventually(settled)
    assert await chain.escrow.balance_of(payer.address) == escrow_before - total
    await asyncio.sleep(2.5)  # more settlement rounds pay nothing more
    assert await chain.token.balance_of(op.address) == operator_before + total


async def test_authorization_that_cannot_be_settled_is_refused_up_front(
    paid_operator: PaidOperator, payer: LocalAccount, chain: ChainClient
) -> None:
    """claim_batch packs deadlines in 56 bits and amounts in 96 (spendauth.md): an
    authorization beyond them could never be settled, so the operator refuses it at
    request time, before generating, and settles the others as usual."""
    op = paid_operator
    operator_before = await chain.token.balance_of(op.address)
    nonces, total = NonceAllocator(), 0
    generated = completion_tokens(op)
    for kw in ({"deadline": 2**56}, {"max_amount": 2**96}):
        max_amount = int(kw.get("max_amount", GENEROUS))
        deadline = kw.get("deadline")
        far = sign_spend_authorization(
            payer, op.ref, op.address, max_amount, nonces.next(), deadline=deadline
        )
        resp = await post(op, body(0), {SPEND_AUTH_HEADER: far.encode()})
        assert resp.status_code == 402, resp.text
        assert resp.json()["error"]["code"] == "malformed_payment"
    assert completion_tokens(op) == generated
    for i in range(1, 3):
        signed = sign_spend_authorization(payer, op.ref, op.address, GENEROUS, nonces.next())
        raw = body(i)
        total += charged(
            raw, await post(op, raw, {SPEND_AUTH_HEADER: signed.encode()}), "spendauth"
        )

    async def settled() -> bool:
        return await chain.token.balance_of(op.address) == operator_before + total

    await eventually(settled)


async def test_payment_channel(
    paid_operator: PaidOperator, payer: LocalAccount, chain: ChainClient
) -> None:
    op = paid_operator
    me = chain.for_account(payer)
    channel_id, _ = await me.escrow.open_channel(op.address, 2 * 10**6, os.urandom(32))
    operator_before = await chain.token.balance_of(op.address)
    cumulative, total = 0, 0
    for i in range(5):
        cumulative += GENEROUS  # each voucher covers this request's ceiling, and more
        voucher = sign_voucher(payer, op.ref, channel_id, cumulative)
        raw = body(i)
        resp = await post(op, raw, {VOUCHER_HEADER: voucher.encode()})
        total += charged(raw, resp, "channel")
        assert (
            int(Receipt.from_json(resp.headers[RECEIPT_HEADER]).payment["channel_consumed"])
            == total
        )  # type: ignore[index]

    async def settled() -> bool:
        return (await chain.escrow.channels(channel_id)).claimed == total

    await eventually(settled)  # the operator claims the metered total, not the vouchers'
    assert await chain.token.balance_of(op.address) == operator_before + total


async def test_x402_with_the_official_sdk(
    paid_operator: PaidOperator, payer: LocalAccount, chain: ChainClient, manifest: Manifest
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
    total = 0
    async with x402HttpxClient(client, timeout=60) as http:
        for i in range(3):
            raw = body(i)
            resp = await http.post(
                f"{op.url}/v1/chat/completions",
                content=raw,
                headers={"Content-Type": "application/json"},
            )
            total += charged(raw, resp, "x402")
            settle = json.loads(base64.b64decode(resp.headers["PAYMENT-RESPONSE"]))
            assert settle["success"] is True and settle["payer"] == payer.address

    async def settled() -> bool:
        return await chain.token.balance_of(op.address) == operator_before + total

    await eventually(settled)
    assert await chain.token.balance_of(payer.address) == wallet_before - total


async def test_unpaid_request_gets_an_x402_challenge(paid_operator: PaidOperator) -> None:
    resp = await post(paid_operator, body(), {})
    assert resp.status_code == 402
    assert resp.json()["error"]["code"] == "payment_required"
    challenge = json.loads(base64.b64decode(resp.headers["PAYMENT-REQUIRED"]))
    assert challenge["x402Version"] == 2
    schemes = {a["scheme"]: a for a in challenge["accepts"]}
    assert set(schemes) == {"exact", "mercato-spendauth"}
    assert schemes["exact"]["payTo"] == paid_operator.address
    assert int(schemes["exact"]["amount"]) > 0


def completion_tokens(op: PaidOperator) -> float:
    text = httpx.get(f"{op.url}/metrics").text
    match = re.search(r'mercato_operator_tokens_total\{kind="completion"\} ([0-9.e+]+)', text)
    return float(match.group(1)) if match else 0.0


def x402_header(account: LocalAccount, op: PaidOperator, manifest: Manifest, value: int) -> str:
    nonce = secrets.token_bytes(32)
    now = int(time.time())
    typed = transfer_with_authorization_typed_data(
        {
            "name": "Mercato USD",
            "version": "1",
            "chainId": manifest.chain_id,
            "verifyingContract": manifest.addresses.token,
        },
        account.address,
        op.address,
        value,
        now - 5,
        now + 3600,
        nonce,
    )
    sig = account.sign_typed_data(full_message=typed).signature
    payload = {
        "x402Version": 2,
        "accepted": {"scheme": "exact", "network": f"eip155:{manifest.chain_id}"},
        "payload": {
            "signature": "0x" + bytes(sig).hex(),
            "authorization": {
                "from": account.address,
                "to": op.address,
                "value": str(value),
                "validAfter": str(now - 5),
                "validBefore": str(now + 3600),
                "nonce": "0x" + nonce.hex(),
            },
        },
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


async def test_attacks_are_refused_before_generation(
    paid_operator: PaidOperator,
    payer: LocalAccount,
    new_account,
    chain: ChainClient,  # type: ignore[no-untyped-def]
    manifest: Manifest,
) -> None:
    op = paid_operator
    nonces = NonceAllocator()
    good = sign_spend_authorization(payer, op.ref, op.address, GENEROUS, nonces.next())
    assert (await post(op, body(), {SPEND_AUTH_HEADER: good.encode()})).status_code == 200
    attacker = Account.create()
    forged = sign_spend_authorization(attacker, op.ref, op.address, GENEROUS, nonces.next())
    forged = dataclasses.replace(forged, auth=dataclasses.replace(forged.auth, payer=payer.address))
    broke: LocalAccount = await new_account(10)  # mUSD in the wallet, none in the escrow
    me = chain.for_account(payer)
    channel_id, _ = await me.escrow.open_channel(op.address, 10**6, os.urandom(32))
    first_voucher = sign_voucher(payer, op.ref, channel_id, GENEROUS)
    assert (await post(op, body(), {VOUCHER_HEADER: first_voucher.encode()})).status_code == 200
    x402_once = x402_header(payer, op, manifest, GENEROUS)
    assert (await post(op, body(), {"PAYMENT-SIGNATURE": x402_once})).status_code == 200

    attacks = {
        "nonce_used": {SPEND_AUTH_HEADER: good.encode()},
        "invalid_signature": {SPEND_AUTH_HEADER: forged.encode()},
        "wrong_operator": {
            SPEND_AUTH_HEADER: sign_spend_authorization(
                payer, op.ref, attacker.address, GENEROUS, nonces.next()
            ).encode()
        },
        "wrong_chain": {
            SPEND_AUTH_HEADER: sign_spend_authorization(
                payer, dataclasses.replace(op.ref, chain_id=1), op.address, GENEROUS, nonces.next()
            ).encode()
        },
        "authorization_expired": {
            SPEND_AUTH_HEADER: sign_spend_authorization(
                payer, op.ref, op.address, GENEROUS, nonces.next(), deadline=int(time.time()) - 1
            ).encode()
        },
        "max_below_estimate": {
            SPEND_AUTH_HEADER: sign_spend_authorization(
                payer, op.ref, op.address, 1, nonces.next()
            ).encode()
        },
        "insufficient_escrow": {
            SPEND_AUTH_HEADER: sign_spend_authorization(
                broke, op.ref, op.address, GENEROUS, nonces.next()
            ).encode()
        },
        "voucher_not_increasing": {VOUCHER_HEADER: first_voucher.encode()},
        "authorization_reused": {"PAYMENT-SIGNATURE": x402_once},
        "malformed_payment": {SPEND_AUTH_HEADER: "not-base64!"},
    }
    generated = completion_tokens(op)
    for reason, headers in attacks.items():
        resp = await post(op, body(), headers)
        assert resp.status_code == 402, (reason, resp.text)
        assert resp.json()["error"]["code"] == reason
        assert "PAYMENT-REQUIRED" in resp.headers
    assert completion_tokens(op) == generated  # nothing was generated for any of them


async def test_sigkill_between_serving_and_settling(
    chain: ChainClient,
    faucet: ChainClient,
    manifest: Manifest,
    payer: LocalAccount,
    tmp_path: Path,
) -> None:
    manifest_path = manifest.save(tmp_path / "manifest.json")
    port = free_port()
    address = await prepare_operator(chain, faucet, manifest, tmp_path / "op", f"kill-{port}", port)
    slow = paid_env(manifest_path, MERCATO_OPERATOR__PAYMENTS__SETTLE_INTERVAL_S="3600")
    process = launch_operator(tmp_path / "op", port, **slow)
    ref = EscrowRef(manifest.chain_id, manifest.addresses.escrow)
    op = PaidOperator(process, address, tmp_path / "op", manifest_path, ref)
    escrow_before = await chain.escrow.balance_of(payer.address)
    nonces, total = NonceAllocator(), 0
    for i in range(3):
        signed = sign_spend_authorization(payer, op.ref, op.address, GENEROUS, nonces.next())
        raw = body(i)
        total += charged(
            raw, await post(op, raw, {SPEND_AUTH_HEADER: signed.encode()}), "spendauth"
        )
    process.stop(signal.SIGKILL)  # served, persisted, not settled
    assert await chain.token.balance_of(address) == 0

    restarted = launch_operator(tmp_path / "op", port, **paid_env(manifest_path))
    try:

        async def settled() -> bool:
            return await chain.token.balance_of(address) == total

        await eventually(settled)
        await asyncio.sleep(3)  # several more rounds: nothing is paid twice
        assert await chain.token.balance_of(address) == total
        assert await chain.escrow.balance_of(payer.address) == escrow_before - total
    finally:
        restarted.stop()


async def test_paid_streams(paid_operator: PaidOperator, payer: LocalAccount) -> None:
    """A finished stream's receipt (after [DONE]) carries the charge for the final usage;
    a stream the client leaves is charged for the prompt and the tokens sent, no more."""
    import sqlite3

    from mercato.protocol.receipts import split_sse_receipt

    op = paid_operator
    nonces = NonceAllocator()
    signed = sign_spend_authorization(payer, op.ref, op.address, GENEROUS, nonces.next())
    raw = body(1, stream=True, stream_options={"include_usage": True})
    resp = await post(op, raw, {SPEND_AUTH_HEADER: signed.encode()})
    stream_bytes, receipt = split_sse_receipt(resp.content)
    assert receipt is not None and receipt.payment is not None
    assert verify_receipt(receipt, raw, stream_bytes).ok
    usage = orjson.loads(stream_bytes.split(b"data: ")[-2].strip())["usage"]
    assert int(receipt.payment["charged"]) == PRICE.cost(
        usage["prompt_tokens"], usage["completion_tokens"]
    )

    long_signed = sign_spend_authorization(payer, op.ref, op.address, GENEROUS, nonces.next())
    long_body = orjson.dumps({
        "model": MODEL, "max_tokens": 400, "temperature": 0.8, "stream": True,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
    })  # fmt: skip
    received = 0
    async with (
        httpx.AsyncClient(timeout=60) as c,
        c.stream(
            "POST",
            f"{op.url}/v1/chat/completions",
            content=long_body,
            headers={SPEND_AUTH_HEADER: long_signed.encode()},
        ) as streamed,
    ):
        async for chunk in streamed.aiter_bytes():
            received += chunk.count(b'"content":"')
            if received >= 5:
                break
    ceiling = PRICE.cost(60, 400)
    db = op.data_dir / "operator.db"

    async def charged_for_what_was_sent() -> bool:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "select status, amount from pay_spend_authorizations where nonce = ?",
                (str(long_signed.auth.nonce),),
            ).fetchone()
        return row is not None and row[0] in ("claimable", "submitted", "settled")

    await eventually(charged_for_what_was_sent, timeout=10)
    with sqlite3.connect(db) as conn:
        (amount,) = conn.execute(
            "select amount from pay_spend_authorizations where nonce = ?",
            (str(long_signed.auth.nonce),),
        ).fetchone()
    assert PRICE.cost(20, received - 1) <= amount < ceiling // 2
