"""The router settles what it pays: a router whose own payer (the SpendAuthPayer of
``mercato up``) pays a paid operator with spend authorizations from its escrow deposit
posts, on shutdown, one spend settlement for the answered requests (JSON and a stream);
the operator (holding its claims for settlements) settles them all with one
claim_settlements transaction (a SpendsSettled event, no SpendsClaimed), and balances
move by exactly the charges of the verified receipts.

A real paid operator (the real small model, registered on anvil, settling every
second) behind an in-process router."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest
from eth_account.signers.local import LocalAccount

from mercato.chain.client import ChainClient
from mercato.chain.events import SpendsClaimed, SpendsSettled
from mercato.chain.manifest import Manifest
from mercato.client.payments import EscrowRef
from mercato.network.router_payer import SpendAuthPayer
from mercato.protocol.receipts import RECEIPT_HEADER, Receipt, split_sse_receipt, verify_receipt
from tests.helpers import free_port
from tests.integration.conftest import MODEL, launch_operator
from tests.integration.payments.conftest import (  # noqa: F401 - fixtures
    PRICE,
    paid_env,
    payer,
    prepare_operator,
)
from tests.integration.payments.test_paid_operator import eventually
from tests.integration.router.conftest import router_settings, run_router

pytestmark = [pytest.mark.model, pytest.mark.chain]


def body(i: int, **extra: object) -> bytes:
    doc = {
        "model": MODEL,
        "max_tokens": 8,
        "temperature": 0,
        "messages": [{"role": "user", "content": f"Say the number {i}."}],
        **extra,
    }
    return orjson.dumps(doc)


def charged(raw: bytes, answer: bytes, receipt: Receipt | None, signer: str) -> int:
    assert receipt is not None and receipt.signing_address.lower() == signer.lower()
    assert verify_receipt(receipt, raw, answer).ok
    assert receipt.payment is not None and receipt.payment["method"] == "spendauth"
    amount = int(receipt.payment["charged"])
    assert amount > 0
    return amount


async def test_router_settles_what_it_paid_with_one_settlement(
    chain: ChainClient,
    faucet: ChainClient,
    manifest: Manifest,
    payer: LocalAccount,  # noqa: F811 - the router's wallet, with an escrow deposit
    tmp_path: Path,
) -> None:
    manifest_path = manifest.save(tmp_path / "manifest.json")
    port = free_port()
    address = await prepare_operator(chain, faucet, manifest, tmp_path / "op", f"rs-{port}", port)
    env = paid_env(manifest_path, MERCATO_OPERATOR__PAYMENTS__SETTLEMENT_WAIT_S="3600")
    process = launch_operator(tmp_path / "op", port, **env)
    static = {
        "address": address,
        "slug": f"rs-{port}",
        "endpoint": process.url,
        "signers": [address],
        "models": [MODEL],
        "price_in_per_m": PRICE.input_per_m,
        "price_out_per_m": PRICE.output_per_m,
    }
    settings = router_settings(
        f"sqlite:///{tmp_path / 'router.db'}",
        tmp_path,
        operators=[static],
        routing={"attempt_timeout_s": 60.0},  # the real model, on a busy machine
    )
    router_payer = SpendAuthPayer(
        payer, EscrowRef(manifest.chain_id, manifest.addresses.escrow), settle_after_s=None
    )
    escrow_before = await chain.escrow.balance_of(payer.address)
    start_block = int(await chain.w3.eth.block_number) + 1
    try:
        total = 0
        async with run_router(settings, payer=router_payer) as router:
            async with httpx.AsyncClient(timeout=90) as c:
                for i in range(3):
                    raw = body(i)
                    resp = await c.post(f"{router}/v1/chat/completions", content=raw,
                                        headers={"Content-Type": "application/json"})  # fmt: skip
                    assert resp.status_code == 200, resp.text
                    got = Receipt.from_json(resp.headers[RECEIPT_HEADER])
                    total += charged(raw, resp.content, got, address)
                raw = body(3, stream=True, stream_options={"include_usage": True})
                resp = await c.post(f"{router}/v1/chat/completions", content=raw,
                                    headers={"Content-Type": "application/json"})  # fmt: skip
                assert resp.status_code == 200, resp.text
                streamed, tail = split_sse_receipt(resp.content)
                total += charged(raw, streamed, tail, address)
            assert router_payer.settler.unsettled == 4
            await asyncio.sleep(2.5)  # several settlement rounds: the claims wait
            assert await chain.token.balance_of(address) == 0
        # the router stopped: its payer posted the settlement and got the answer
        counts = router_payer.settlement_counts
        assert counts == {"accepted": 1, "refused": 0, "failed": 0, "overcharged": 0}
        (answered,) = router_payer.settler.answers
        assert answered["status_code"] == 200 and answered["status"] == "claimable", answered
        assert answered["total"] == str(total) and bin(int(answered["mask"])).count("1") == 4

        async def settled() -> bool:
            return await chain.token.balance_of(address) == total

        await eventually(settled)
        await asyncio.sleep(2.5)  # more rounds pay nothing more
        assert await chain.token.balance_of(address) == total
        assert await chain.escrow.balance_of(payer.address) == escrow_before - total
        events = await chain.escrow.fetch_events(start_block)
        (spent,) = [e for e in events if isinstance(e, SpendsSettled)]
        assert (spent.payer, spent.operator, spent.amount) == (payer.address, address, total)
        assert spent.word == int(answered["word"]) and spent.mask == int(answered["mask"])
        assert not [e for e in events if isinstance(e, SpendsClaimed)]  # none one by one
    finally:
        process.stop()
