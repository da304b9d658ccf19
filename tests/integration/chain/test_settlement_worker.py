"""The operator's settlement worker with spend settlements, on anvil (no model): a
stored settlement is sent with one claim_settlements, the authorizations it does not
cover wait for theirs (``settlement_wait_s``) and are then claimed one by one; a
settlement rejected on chain falls back to single claims; one left ``submitted`` by a
crash is reconciled from the nonce bitmap, before or after its transaction landed.
Every step pays exactly once."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from eth_account.signers.local import LocalAccount

from mercato.chain.client import ChainClient
from mercato.client.payments import EscrowRef, sign_spend_authorization, sign_spend_settlement
from mercato.payments.rules import PaymentContext
from mercato.payments.service import PaymentService
from mercato.payments.settlement import SettlementPolicy, SettlementWorker
from mercato.payments.store import PaymentStore
from mercato.storage.db import make_engine, migrate
from mercato.storage.payment_models import CLAIMABLE, REJECTED, SETTLED, SUBMITTED

from .conftest import NewAccount

pytestmark = pytest.mark.chain


class Setup:
    def __init__(self, chain: ChainClient, payer: LocalAccount, operator: ChainClient,
                 service: PaymentService) -> None:  # fmt: skip
        self.chain, self.payer, self.operator, self.service = chain, payer, operator, service
        self.store = service.store
        self.ref = EscrowRef(chain.manifest.chain_id, chain.escrow.address)
        assert operator.address is not None
        self.address: str = operator.address

    def worker(self, wait: float) -> SettlementWorker:
        policy = SettlementPolicy(settlement_wait_s=wait)
        return SettlementWorker(self.service, self.operator.escrow, self.address, policy)

    def serve(self, word: int, charges: dict[int, int]) -> None:
        for bit, amount in charges.items():
            nonce = word << 8 | bit
            signed = sign_spend_authorization(self.payer, self.ref, self.address, 10**6, nonce)
            assert self.store.reserve_spend(signed)
            self.store.capture_spend(self.payer.address, nonce, amount, f"r{nonce}")

    async def offer(self, word: int, charges: dict[int, int]) -> None:
        signed = sign_spend_settlement(self.payer, self.ref, self.address, word, charges)
        answer = await self.service.offer_settlement(orjson.dumps(signed.to_doc()))
        assert answer["status"] == CLAIMABLE

    async def earned(self) -> int:
        return await self.chain.token.balance_of(self.address)

    def status(self, word: int, bit: int) -> str | None:
        found = self.store.spend_status(self.payer.address, word << 8 | bit)
        return found[0] if found else None


@pytest.fixture
async def setup(
    chain: ChainClient, new_account: NewAccount, tmp_path: Path
) -> AsyncIterator[Setup]:
    payer = await new_account(1_000)
    me = chain.for_account(payer)
    await me.token.approve(chain.escrow.address, 10**12)
    await me.escrow.deposit(100 * 10**6)
    operator = chain.for_account(await new_account())
    assert operator.address is not None
    engine = make_engine(f"sqlite:///{tmp_path / 'pay.db'}")
    migrate(engine)
    ctx = PaymentContext(operator.address, chain.manifest.chain_id, chain.escrow.address,
                         await chain.escrow.domain_separator(), 120)  # fmt: skip
    service = PaymentService(PaymentStore(engine), None, ctx, inline_db=True)
    await service.start()
    yield Setup(chain, payer, operator, service)
    await service.close()


async def test_settlement_first_then_single_claims_after_the_wait(setup: Setup) -> None:
    word, other = secrets.randbits(64), secrets.randbits(64)
    setup.serve(word, {0: 1_000, 1: 2_000, 2: 0, 3: 4_000})
    setup.serve(other, {0: 500})
    await setup.offer(word, {0: 1_000, 1: 2_000, 2: 0})
    payer_before = await setup.chain.escrow.balance_of(setup.payer.address)

    assert await setup.worker(wait=3_600).settle_once()
    assert await setup.earned() == 3_000  # the settlement only: the rest waits for theirs
    assert setup.store.settlements(SETTLED)[0].mask == 0b111
    assert [setup.status(word, b) for b in range(4)] == [SETTLED, SETTLED, SETTLED, CLAIMABLE]
    assert setup.status(other, 0) == CLAIMABLE

    assert await setup.worker(wait=0).settle_once()  # no settlement came: one by one
    assert await setup.earned() == 7_500
    assert setup.status(word, 3) == SETTLED and setup.status(other, 0) == SETTLED
    await setup.worker(wait=0).settle_once()  # nothing left: nothing more paid
    assert await setup.earned() == 7_500
    assert await setup.chain.escrow.balance_of(setup.payer.address) == payer_before - 7_500
    assert await setup.chain.escrow.nonce_bitmap(setup.payer.address, word) == 0b1111


async def test_settlement_rejected_on_chain_falls_back_to_single_claims(setup: Setup) -> None:
    word = secrets.randbits(64)
    setup.serve(word, {0: 1_000, 1: 2_000, 2: 3_000})
    await setup.offer(word, {0: 1_000, 1: 2_000, 2: 3_000})
    payer_side = setup.chain.for_account(setup.payer)
    await payer_side.escrow.invalidate_nonces(word, 1 << 1)  # the payer burns one nonce

    assert await setup.worker(wait=3_600).settle_once()
    (rejected,) = setup.store.settlements(REJECTED)
    assert rejected.mask == 0b111
    # its authorizations went back to single claims in the same round: the burnt one is
    # refused on chain, the others are paid
    assert await setup.earned() == 4_000
    assert [setup.status(word, b) for b in range(3)] == [SETTLED, REJECTED, SETTLED]


async def test_crash_before_the_settlement_landed(setup: Setup) -> None:
    word = secrets.randbits(64)
    setup.serve(word, {0: 1_000, 1: 2_000})
    await setup.offer(word, {0: 1_000, 1: 2_000})
    setup.store.submit_settlements(setup.store.settlements(CLAIMABLE))  # then: crash
    assert setup.store.settlements(SUBMITTED) and await setup.earned() == 0

    assert await setup.worker(wait=3_600).settle_once()  # not on chain: sent again
    assert await setup.earned() == 3_000
    assert [setup.status(word, b) for b in range(2)] == [SETTLED, SETTLED]


async def test_crash_after_the_settlement_landed(setup: Setup) -> None:
    word = secrets.randbits(64)
    setup.serve(word, {0: 1_000, 1: 2_000})
    await setup.offer(word, {0: 1_000, 1: 2_000})
    worker = setup.worker(wait=3_600)
    ready = setup.store.submit_settlements(setup.store.settlements(CLAIMABLE))
    await setup.operator.escrow.claim_settlements(
        [worker._signed_settlement(st) for st in ready]
    )  # landed; the process died before recording it
    assert await setup.earned() == 3_000

    await worker.settle_once()
    assert setup.store.settlements(SETTLED) and not setup.store.settlements(SUBMITTED)
    assert [setup.status(word, b) for b in range(2)] == [SETTLED, SETTLED]
    await setup.worker(wait=0).settle_once()
    assert await setup.earned() == 3_000  # paid once
