"""The operator's side of spend settlements without a chain: POST
/v1/payments/settlements' checks (PaymentService.offer_settlement over a real SQLite
store) and what the settlement worker's store steps do to the rows."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from eth_account import Account

from mercato.client.payments import EscrowRef, sign_spend_authorization, sign_spend_settlement
from mercato.payments.errors import Reason, SettlementRefused
from mercato.payments.rules import PaymentContext
from mercato.payments.service import PaymentService
from mercato.payments.store import PaymentStore
from mercato.payments.wire import SignedSpendSettlement
from mercato.protocol.eip712 import domain_separator, escrow_domain
from mercato.storage.db import make_engine, migrate
from mercato.storage.payment_models import CLAIMABLE, REJECTED, SETTLED, SUBMITTED

ESCROW = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
PAYER = Account.from_key(b"\x11" * 32)
MALLORY = Account.from_key(b"\x66" * 32)
OPERATOR = Account.from_key(b"\x22" * 32).address
REF = EscrowRef(31337, ESCROW)
CTX = PaymentContext(OPERATOR, 31337, ESCROW, domain_separator(escrow_domain(31337, ESCROW)), 120)
WORD = 0xABCDEF


@pytest.fixture
def service(tmp_path: Path) -> PaymentService:
    engine = make_engine(f"sqlite:///{tmp_path / 'pay.db'}")
    migrate(engine)
    return PaymentService(PaymentStore(engine), None, CTX, inline_db=True)


def serve(service: PaymentService, charges: dict[int, int], word: int = WORD) -> None:
    """Authorizations as the request path records them: reserved, then captured."""
    for bit, amount in charges.items():
        signed = sign_spend_authorization(PAYER, REF, OPERATOR, 10_000, word << 8 | bit)
        assert service.store.reserve_spend(signed)
        service.store.capture_spend(PAYER.address, word << 8 | bit, amount, f"req-{bit}")


def body(charges: dict[int, int], **kw: object) -> bytes:
    args: dict[str, object] = {"word": WORD, "charges": charges, **kw}
    account = args.pop("account", PAYER)
    ref = args.pop("ref", REF)
    operator = args.pop("operator", OPERATOR)
    signed = sign_spend_settlement(account, ref, operator, **args)  # type: ignore[arg-type]
    return orjson.dumps(signed.to_doc())


async def refused(service: PaymentService, raw: bytes) -> str:
    with pytest.raises(SettlementRefused) as info:
        await service.offer_settlement(raw)
    assert info.value.status == 422
    return info.value.code


async def test_a_settlement_of_served_authorizations_is_stored(service: PaymentService) -> None:
    serve(service, {0: 100, 1: 250, 2: 0})  # bit 2 failed: charged 0, may be included
    answer = await service.offer_settlement(body({0: 100, 1: 250, 2: 0}))
    assert answer == {
        "object": "spend_settlement",
        "payer": PAYER.address.lower(),
        "word": str(WORD),
        "mask": "7",
        "total": "350",
        "status": CLAIMABLE,
        "replaced": 0,
    }
    (stored,) = service.store.settlements(CLAIMABLE)
    assert (stored.word, stored.mask, stored.total) == (WORD, 7, 350)
    assert stored.nonces == [WORD << 8, WORD << 8 | 1, WORD << 8 | 2]
    # sent twice (a retry): the same answer, nothing new stored
    assert (await service.offer_settlement(body({0: 100, 1: 250, 2: 0})))["status"] == CLAIMABLE
    assert len(service.store.settlements(CLAIMABLE)) == 1


async def test_refusals_have_machine_readable_codes(service: PaymentService) -> None:
    serve(service, {0: 100, 1: 250})
    now = int(time.time())
    assert await refused(service, b"{not json") == Reason.MALFORMED.value
    assert await refused(service, b'{"payer": "0x12"}') == Reason.MALFORMED.value
    assert await refused(service, body({0: 100}, ref=EscrowRef(1, ESCROW))) == "wrong_chain"
    other = Account.create().address
    assert await refused(service, body({0: 100}, operator=other)) == "wrong_operator"
    assert await refused(service, body({0: 100}, deadline=now + 60)) == "authorization_expired"
    assert await refused(service, body({0: 0})) == "settlement_empty"
    forged = SignedSpendSettlement.from_json(body({0: 100}, account=MALLORY))
    doc = forged.to_doc() | {"payer": PAYER.address}
    assert await refused(service, orjson.dumps(doc)) == "invalid_signature"
    assert await refused(service, body({0: 100, 5: 1})) == "settlement_nonce_unknown"
    assert await refused(service, body({0: 100, 1: 249})) == "settlement_total_mismatch"
    assert service.store.settlements(CLAIMABLE) == []


async def test_in_flight_and_submitted_nonces_are_refused(service: PaymentService) -> None:
    serve(service, {0: 100, 1: 250})
    in_flight = sign_spend_authorization(PAYER, REF, OPERATOR, 10_000, WORD << 8 | 3)
    assert service.store.reserve_spend(in_flight)  # being served: amount not known yet
    assert await refused(service, body({0: 100, 3: 5})) == "settlement_nonce_unknown"
    service.store.mark_spends([(PAYER.address, WORD << 8 | 1)], SUBMITTED)  # claimed alone
    assert await refused(service, body({0: 100, 1: 250})) == "nonce_used"
    assert (await service.offer_settlement(body({0: 100})))["status"] == CLAIMABLE


async def test_superset_replaces_a_stored_settlement_overlap_does_not(
    service: PaymentService,
) -> None:
    serve(service, {0: 100, 1: 250, 2: 30, 3: 4})
    await service.offer_settlement(body({0: 100}))
    answer = await service.offer_settlement(body({0: 100, 1: 250}))  # superset: replaces
    assert answer["replaced"] == 1
    assert [s.mask for s in service.store.settlements(CLAIMABLE)] == [0b11]
    await service.offer_settlement(body({2: 30}))  # disjoint: a second one
    assert sorted(s.mask for s in service.store.settlements(CLAIMABLE)) == [0b11, 0b100]
    assert await refused(service, body({1: 250, 3: 4})) == "settlement_conflict"
    # once submitted, even a superset cannot replace it
    ready = service.store.submit_settlements(service.store.settlements(CLAIMABLE))
    assert len(ready) == 2
    assert await refused(service, body({0: 100, 1: 250, 3: 4})) == "settlement_conflict"
    assert (await service.offer_settlement(body({3: 4})))["status"] == CLAIMABLE


async def test_store_steps_of_the_worker(service: PaymentService) -> None:
    store = service.store
    serve(service, {0: 100, 1: 250, 2: 0, 3: 7})
    await service.offer_settlement(body({0: 100, 1: 250, 2: 0}))
    (st,) = store.settlements(CLAIMABLE)
    (ready,) = store.submit_settlements([st])
    statuses = {p.nonce & 255: p.status for p in store.pending_spends()}
    assert statuses == {0: SUBMITTED, 1: SUBMITTED, 3: CLAIMABLE}  # bit 2: settled at 0
    # rejected on-chain: its authorizations go back to being claimed one by one
    store.finish_settlement(ready, REJECTED, tx_hash="0x" + "ab" * 32, reason="onchain:4")
    assert {p.nonce & 255 for p in store.pending_spends() if p.status == CLAIMABLE} == {0, 1, 3}
    assert store.settlements(CLAIMABLE) == [] and store.settlements(SUBMITTED) == []
    # offered again, settled this time
    await service.offer_settlement(body({0: 100, 1: 250, 2: 0}))
    (ready,) = store.submit_settlements(store.settlements(CLAIMABLE))
    store.finish_settlement(ready, SETTLED, tx_hash="0x" + "cd" * 32)
    assert store.spend_status(PAYER.address, WORD << 8 | 1) == (SETTLED, 250)
    assert [p.nonce & 255 for p in store.pending_spends()] == [3]
    assert store.unsettled_by_payer() == {PAYER.address.lower(): 7}


async def test_a_settlement_overtaken_by_single_claims_is_not_sent(
    service: PaymentService,
) -> None:
    store = service.store
    serve(service, {0: 100, 1: 250})
    await service.offer_settlement(body({0: 100, 1: 250}))
    store.mark_spends([(PAYER.address, WORD << 8 | 1)], SUBMITTED)  # the worker raced it
    assert store.submit_settlements(store.settlements(CLAIMABLE)) == []
    assert store.settlements(CLAIMABLE) == []
    assert store.spend_status(PAYER.address, WORD << 8) == (CLAIMABLE, 100)
