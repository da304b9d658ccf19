"""The SDK against one paid operator on anvil (the payments fixtures): every method
pays, every receipt verifies, streaming included."""

from __future__ import annotations

import asyncio

import pytest
from eth_account.signers.local import LocalAccount

from mercato.chain.manifest import Manifest
from mercato.client.sdk import AsyncClient, Client
from tests.integration.conftest import MODEL
from tests.integration.payments.conftest import PaidOperator

pytestmark = [pytest.mark.e2e, pytest.mark.model, pytest.mark.chain]
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.mark.parametrize("method", ["spendauth", "channel", "x402"])
async def test_async_client_pays_and_verifies(
    method: str,
    paid_operator: PaidOperator,
    payer: LocalAccount,
    manifest: Manifest,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    client = AsyncClient(
        paid_operator.url,
        payment=method,
        wallet=payer,
        manifest=manifest,
        home=tmp_path,  # type: ignore[arg-type]
        expected_signers=[paid_operator.address],
    )
    try:
        for _ in range(2):
            reply = await client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=8,
                temperature=0,  # type: ignore[arg-type]
            )
            answer = client.answer_for(reply)
            assert answer is not None and answer.verified, answer
            assert answer.method == method and answer.cost and answer.cost > 0
            assert answer.operator and answer.operator.lower() == paid_operator.address.lower()
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=8,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
        )
        ids = {chunk.id async for chunk in stream}
        answer = client.last_answer
        assert answer is not None and answer.stream and answer.verified, answer
        assert answer.response_id in ids
    finally:
        await client.close()


def test_sync_client_spendauth_and_channel(
    paid_operator: PaidOperator,
    payer: LocalAccount,
    manifest: Manifest,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    for method in ("spendauth", "channel"):
        with Client(
            paid_operator.url,
            payment=method,
            wallet=payer,
            manifest=manifest,  # type: ignore[arg-type]
            home=tmp_path,
        ) as client:
            _, answer = client.create_with_receipt(
                model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0
            )
            assert answer is not None and answer.verified and answer.cost
            text = "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(
                    model=MODEL,
                    messages=MESSAGES,
                    max_tokens=8,
                    temperature=0,
                    stream=True,  # type: ignore[arg-type]
                )
                if c.choices
            )
            assert text and client.last_answer is not None and client.last_answer.verified


async def test_channel_with_concurrent_requests(
    paid_operator: PaidOperator,
    payer: LocalAccount,
    manifest: Manifest,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """Vouchers stay increasing and cover every request in flight; the deposit is
    topped up when it runs short."""
    client = AsyncClient(
        paid_operator.url,
        payment="channel",
        wallet=payer,
        manifest=manifest,
        home=tmp_path,
        channel_deposit=2_000,
    )  # type: ignore[arg-type]

    async def ask() -> None:
        reply = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=8,  # type: ignore[arg-type]
        )
        answer = client.answer_for(reply)
        assert answer is not None and answer.verified and answer.cost

    try:
        await ask()  # opens the channel
        await asyncio.gather(ask(), ask(), ask())
        await ask()
        payment = client.last_answer.payment  # type: ignore[union-attr]
        assert payment is not None and int(payment["channel_consumed"]) > 0
    finally:
        await client.close()
