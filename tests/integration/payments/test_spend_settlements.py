"""Spend settlements end to end on a real chain (anvil) with the real model: the SDK
pays each request with a spend authorization, then posts one spend settlement for the
answered nonces of its word; the operator (holding its claims for settlements) settles
them all with one claim_settlements transaction; balances move by exactly the charges;
the covered authorizations can no longer be claimed one by one."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.client import ChainClient
from mercato.chain.escrow import ClaimRejectReason, SpendClaim
from mercato.chain.events import ClaimRejected, SpendsClaimed, SpendsSettled
from mercato.chain.manifest import Manifest
from mercato.client.paying import SpendAuthPayment
from mercato.client.payments import EscrowRef
from mercato.client.sdk import AsyncClient
from mercato.crypto.keystore import load_or_create, resolve_password
from mercato.protocol.eip712 import SpendAuthorization
from tests.helpers import free_port
from tests.integration.conftest import MODEL, launch_operator
from tests.integration.payments.conftest import PaidOperator, paid_env, prepare_operator
from tests.integration.payments.test_paid_operator import eventually

pytestmark = [pytest.mark.model, pytest.mark.chain]
REQUESTS = 4


async def test_sdk_settles_with_one_spend_settlement(
    chain: ChainClient,
    faucet: ChainClient,
    manifest: Manifest,
    payer: LocalAccount,
    tmp_path: Path,
) -> None:
    manifest_path = manifest.save(tmp_path / "manifest.json")
    port = free_port()
    address = await prepare_operator(chain, faucet, manifest, tmp_path / "op", f"set-{port}", port)
    env = paid_env(manifest_path, MERCATO_OPERATOR__PAYMENTS__SETTLEMENT_WAIT_S="3600")
    process = launch_operator(tmp_path / "op", port, **env)
    op = PaidOperator(
        process, address, tmp_path / "op", manifest_path,
        EscrowRef(manifest.chain_id, manifest.addresses.escrow),
    )  # fmt: skip
    escrow_before = await chain.escrow.balance_of(payer.address)
    start_block = int(await chain.w3.eth.block_number) + 1
    client = AsyncClient(
        op.url, payment="spendauth", wallet=payer, manifest=manifest, home=tmp_path,
        expected_signers=[address],
    )  # fmt: skip
    try:
        total = 0
        for i in range(REQUESTS):
            reply = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"Say the number {i}."}],
                max_tokens=8,
                temperature=0,
            )
            answer = client.answer_for(reply)
            assert answer is not None and answer.verified and answer.cost
            total += answer.cost
        await asyncio.sleep(2.5)  # several settlement rounds: the claims wait for settlement
        assert await chain.token.balance_of(address) == 0
        payer_side = client.payer
        assert isinstance(payer_side, SpendAuthPayment)
        await payer_side.flush()  # what close() does, here to read the operator's answer
        (answered,) = payer_side.settlements
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
        assert not [e for e in events if isinstance(e, SpendsClaimed)]  # no claim one by one
        receipt = await chain.w3.eth.get_transaction_receipt(spent.tx_hash)  # type: ignore[arg-type]
        assert receipt["to"] == chain.escrow.address and receipt["from"] == address

        # the covered authorizations, claimed one by one afterwards, are all refused
        with sqlite3.connect(tmp_path / "op" / "operator.db") as db:
            rows = db.execute(
                "SELECT nonce, max_amount, deadline, signature, amount, status, tx_hash "
                "FROM pay_spend_authorizations WHERE payer = ?",
                (payer.address.lower(),),
            ).fetchall()
        assert len(rows) == REQUESTS
        assert {(r[5], r[6]) for r in rows} == {("settled", spent.tx_hash)}
        keys_dir = tmp_path / "op" / "keys"
        keys = load_or_create(keys_dir, resolve_password(keys_dir, None, None), fast_kdf=True)
        operator = chain.for_account(Account.from_key(keys.ecdsa.secret))
        claims = [
            SpendClaim(
                SpendAuthorization(payer.address, address, int(r[1]), int(r[0]), r[2]),
                r[4],
                bytes.fromhex(r[3][2:]),
            )
            for r in rows
        ]
        result = await operator.escrow.claim_batch(claims)
        reasons = {ClaimRejectReason(e.reason) for e in result.events_of(ClaimRejected)}
        assert len(result.events_of(ClaimRejected)) == REQUESTS
        assert reasons == {ClaimRejectReason.NONCE_USED}
        assert await chain.token.balance_of(address) == total
    finally:
        await client.close()
        process.stop()
