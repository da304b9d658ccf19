"""PaymentEscrow.claim_settlements: one payer signature settles many already-authorized
nonces of one word (docs/protocols/spendauth.md, "Spend settlements").

Signatures come from ``eth_account``'s ``sign_typed_data`` over the typed data built by
``mercato.protocol.eip712`` exactly as the doc gives it.
"""

from __future__ import annotations

from typing import Any

import boa
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.batch import SettlementTuple, pack_batch, pack_settlement, unpack_settlement
from mercato.protocol import eip712

from .conftest import USD, account, now, sign_settlement, sign_spend, sign_typed

pytestmark = pytest.mark.chain

EXPIRED, OVER_MAX, NONCE_USED, INSUFFICIENT, BAD_SIGNATURE, ZERO_AMOUNT = 1, 2, 3, 4, 5, 6
WORD = 0x2A


def events_of(contract: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for e in contract.get_logs():
        out.setdefault(type(e).__name__, []).append(e)
    return out


def settle(escrow: Any, operator: Any, packed: list[SettlementTuple]) -> dict[str, list[Any]]:
    with boa.env.prank(operator):
        escrow.claim_settlements(packed)
    return events_of(escrow)


def rejections(ev: dict[str, list[Any]]) -> list[tuple[str, int, int, int]]:
    return [(e.payer, e.word, e.mask, e.reason) for e in ev.get("SettlementRejected", [])]


def settled(ev: dict[str, list[Any]]) -> list[tuple[str, str, int, int, int]]:
    return [(e.payer, e.operator, e.word, e.mask, e.amount) for e in ev.get("SpendsSettled", [])]


def signed(
    acct: LocalAccount,
    domain: dict[str, Any],
    operator: Any,
    mask: int,
    total: int,
    *,
    word: int = WORD,
    ttl: int = 3_600,
) -> SettlementTuple:
    settlement, sig = sign_settlement(acct, domain, operator, word, mask, total, now() + ttl)
    return pack_settlement(settlement, sig)


def test_settlement_signed_from_the_doc_typed_data_is_accepted(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    escrow = funded
    deadline = now() + 3_600
    mask = (1 << 100) - 1  # nonces 0x2a00 ... 0x2a63
    typed = eip712.spend_settlement_typed_data(
        escrow_domain, payer.address, str(operator), WORD, mask, 7 * USD, deadline
    )
    signature = Account.sign_typed_data(payer.key, full_message=typed)
    assert signature.message_hash == escrow.spend_settlement_digest(
        payer.address, operator, WORD, mask, 7 * USD, deadline
    )
    settlement = eip712.SpendSettlement(payer.address, str(operator), WORD, mask, 7 * USD, deadline)
    assert settlement.digest(bytes(escrow.DOMAIN_SEPARATOR())) == signature.message_hash
    packed = pack_settlement(settlement, bytes(signature.signature))
    assert unpack_settlement(packed) == (int(payer.address, 16), 7 * USD, WORD, mask, deadline)
    ev = settle(escrow, operator, [packed])
    assert rejections(ev) == []
    assert settled(ev) == [(payer.address, operator, WORD, mask, 7 * USD)]
    (transfer,) = ev["Transfer"]
    assert (transfer.sender, transfer.receiver, transfer.value) == (
        escrow.address,
        operator,
        7 * USD,
    )
    assert token.balanceOf(operator) == 7 * USD
    assert escrow.balance_of(payer.address) == 993 * USD
    assert token.balanceOf(escrow.address) == 2 * 1_000 * USD - 7 * USD
    assert escrow.nonce_bitmap(payer.address, WORD) == mask
    assert all(escrow.is_nonce_used(payer.address, n) for n in settlement.nonces)
    assert not escrow.is_nonce_used(payer.address, WORD << 8 | 100)


def test_replayed_settlement_is_rejected(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    packed = signed(payer, escrow_domain, operator, 0b111, 3 * USD)
    settle(funded, operator, [packed])
    ev = settle(funded, operator, [packed])
    assert rejections(ev) == [(payer.address, WORD, 0b111, NONCE_USED)]
    assert "Transfer" not in ev and "SpendsSettled" not in ev
    # twice in one call: the second copy is rejected
    packed = signed(payer, escrow_domain, operator, 0b11000, 2 * USD)
    ev = settle(funded, operator, [packed, packed])
    assert settled(ev) == [(payer.address, operator, WORD, 0b11000, 2 * USD)]
    assert rejections(ev) == [(payer.address, WORD, 0b11000, NONCE_USED)]
    assert token.balanceOf(operator) == 5 * USD
    assert funded.balance_of(payer.address) == 995 * USD


def test_expired_settlement_is_rejected(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    first = signed(payer, escrow_domain, operator, 0b1, USD, ttl=60)
    second = signed(payer, escrow_domain, operator, 0b10, USD, ttl=60)
    boa.env.time_travel(seconds=60)  # block.timestamp == deadline: still valid
    assert rejections(settle(funded, operator, [first])) == []
    boa.env.time_travel(seconds=1)
    ev = settle(funded, operator, [second])
    assert rejections(ev) == [(payer.address, WORD, 0b10, EXPIRED)]
    assert not funded.is_nonce_used(payer.address, WORD << 8 | 1)


def test_settlement_overlapping_a_claimed_nonce_is_rejected_whole(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    nonce = WORD << 8 | 5
    auth, sig = sign_spend(payer, escrow_domain, operator, USD, nonce, now() + 3_600)
    with boa.env.prank(operator):
        funded.claim_batch(*pack_batch([(auth, USD // 2, sig)]))
    packed = signed(payer, escrow_domain, operator, 0b111111, 6 * USD)  # covers bit 5
    ev = settle(funded, operator, [packed])
    assert rejections(ev) == [(payer.address, WORD, 0b111111, NONCE_USED)]
    assert funded.nonce_bitmap(payer.address, WORD) == 1 << 5  # nothing else marked
    assert funded.balance_of(payer.address) == 1_000 * USD - USD // 2
    assert token.balanceOf(operator) == USD // 2


def test_settlement_overlapping_a_cancelled_nonce_is_rejected(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    with boa.env.prank(payer.address):
        funded.cancel_nonce(WORD << 8 | 3)
    ev = settle(funded, operator, [signed(payer, escrow_domain, operator, 0b1111, USD)])
    assert rejections(ev) == [(payer.address, WORD, 0b1111, NONCE_USED)]
    with boa.env.prank(payer.address):
        funded.invalidate_nonces(WORD + 1, 1 << 200)
    packed = signed(payer, escrow_domain, operator, 1 << 200 | 1, USD, word=WORD + 1)
    assert rejections(settle(funded, operator, [packed]))[0][3] == NONCE_USED
    assert funded.balance_of(payer.address) == 1_000 * USD


def test_individual_claim_after_settlement_is_rejected(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    deadline = now() + 3_600
    claims = [
        (*sign_spend(payer, escrow_domain, operator, USD, WORD << 8 | i, deadline), USD)
        for i in range(3)
    ]
    # bit 2 was a failed request: included with charge 0
    settle(funded, operator, [signed(payer, escrow_domain, operator, 0b111, 2 * USD)])
    with boa.env.prank(operator):
        funded.claim_batch(*pack_batch([(a, amount, s) for a, s, amount in claims]))
    ev = events_of(funded)
    assert [(e.nonce, e.reason) for e in ev["ClaimRejected"]] == [
        (WORD << 8 | i, NONCE_USED) for i in range(3)
    ]
    assert ev["BatchSettled"][0].total == 0
    assert token.balanceOf(operator) == 2 * USD
    assert funded.balance_of(payer.address) == 998 * USD


def test_zero_total_and_empty_mask_are_rejected(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    zero_total = signed(payer, escrow_domain, operator, 0b1, 0)
    empty_mask = signed(payer, escrow_domain, operator, 0, USD)
    ev = settle(funded, operator, [zero_total, empty_mask])
    assert rejections(ev) == [
        (payer.address, WORD, 0b1, ZERO_AMOUNT),
        (payer.address, WORD, 0, ZERO_AMOUNT),
    ]
    assert funded.nonce_bitmap(payer.address, WORD) == 0
    assert funded.balance_of(payer.address) == 1_000 * USD


def test_insufficient_balance_is_rejected(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    too_much = signed(payer, escrow_domain, operator, 0b1, 1_000 * USD + 1)
    ev = settle(funded, operator, [too_much])
    assert rejections(ev) == [(payer.address, WORD, 0b1, INSUFFICIENT)]
    # exactly the balance settles, and the next settlement then finds it empty
    exact = signed(payer, escrow_domain, operator, 0b10, 1_000 * USD)
    one_more = signed(payer, escrow_domain, operator, 0b100, 1)
    ev = settle(funded, operator, [exact, one_more])
    assert rejections(ev) == [(payer.address, WORD, 0b100, INSUFFICIENT)]
    assert funded.balance_of(payer.address) == 0
    assert token.balanceOf(operator) == 1_000 * USD


def test_forged_and_tampered_settlements_never_pay(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    mallory = account(0x666)
    deadline = now() + 3_600
    genuine = eip712.SpendSettlement(payer.address, str(operator), WORD, 0b11, USD, deadline)
    sig = sign_typed(payer, genuine.typed_data(escrow_domain))
    forged_sig = sign_typed(mallory, genuine.typed_data(escrow_domain))
    tampered = [
        eip712.SpendSettlement(payer.address, str(operator), WORD, 0b111, USD, deadline),
        eip712.SpendSettlement(payer.address, str(operator), WORD + 1, 0b11, USD, deadline),
        eip712.SpendSettlement(payer.address, str(operator), WORD, 0b11, USD - 1, deadline),
        eip712.SpendSettlement(payer.address, str(operator), WORD, 0b11, USD, deadline + 1),
    ]
    packed = [pack_settlement(genuine, forged_sig)] + [pack_settlement(t, sig) for t in tampered]
    ev = settle(funded, operator, packed)
    assert [r[3] for r in rejections(ev)] == [BAD_SIGNATURE] * 5
    assert token.balanceOf(operator) == 0
    assert funded.nonce_bitmap(payer.address, WORD) == 0
    assert funded.nonce_bitmap(payer.address, WORD + 1) == 0


def test_high_s_signature_is_rejected(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    settlement, sig = sign_settlement(payer, escrow_domain, operator, WORD, 0b1, USD, now() + 3_600)
    v, _r, s = eip712.split_signature(sig)
    high_s = eip712.SECP256K1_N - s  # the malleable twin: same signer, flipped parity
    vs = ((1 - (v - 27)) << 255) | high_s
    pt, wd, mask, r, _vs = pack_settlement(settlement, sig)
    ev = settle(funded, operator, [(pt, wd, mask, r, vs.to_bytes(32, "big"))])
    assert rejections(ev) == [(payer.address, WORD, 0b1, BAD_SIGNATURE)]
    assert funded.balance_of(payer.address) == 1_000 * USD


def test_settlement_for_another_operator_is_rejected(
    funded: Any,
    token: Any,
    payer: LocalAccount,
    operator: Any,
    operator2: Any,
    escrow_domain: dict[str, Any],
) -> None:
    packed = signed(payer, escrow_domain, operator, 0b1, USD)
    ev = settle(funded, operator2, [packed])
    assert rejections(ev) == [(payer.address, WORD, 0b1, BAD_SIGNATURE)]
    assert token.balanceOf(operator2) == 0
    assert not funded.is_nonce_used(payer.address, WORD << 8)  # still the right operator's
    assert settled(settle(funded, operator, [packed]))[0][4] == USD


def test_mixed_call_good_settlements_settle_bad_ones_are_skipped(
    funded: Any,
    token: Any,
    payer: LocalAccount,
    payer2: LocalAccount,
    operator: Any,
    escrow_domain: dict[str, Any],
) -> None:
    mallory = account(0x666)
    deadline = now() + 3_600
    forged_s = eip712.SpendSettlement(payer.address, str(operator), 9, 0b1, USD, deadline)
    forged = pack_settlement(forged_s, sign_typed(mallory, forged_s.typed_data(escrow_domain)))
    plan = [
        signed(payer, escrow_domain, operator, 0xFF, 10 * USD),  # ok
        signed(payer2, escrow_domain, operator, 0xFF, 20 * USD),  # ok: other payer, same word
        signed(payer, escrow_domain, operator, 0x180, 5 * USD),  # overlaps the first (bit 7)
        forged,
        signed(payer, escrow_domain, operator, 0, 5 * USD),  # empty mask
        signed(payer2, escrow_domain, operator, 1, 2_000 * USD, word=3),  # over the balance
        signed(payer, escrow_domain, operator, 1 << 255, 3 * USD, word=2**200 - 1),  # ok
    ]
    ev = settle(funded, operator, plan)
    assert rejections(ev) == [
        (payer.address, WORD, 0x180, NONCE_USED),
        (payer.address, 9, 0b1, BAD_SIGNATURE),
        (payer.address, WORD, 0, ZERO_AMOUNT),
        (payer2.address, 3, 1, INSUFFICIENT),
    ]
    assert settled(ev) == [
        (payer.address, operator, WORD, 0xFF, 10 * USD),
        (payer2.address, operator, WORD, 0xFF, 20 * USD),
        (payer.address, operator, 2**200 - 1, 1 << 255, 3 * USD),
    ]
    (transfer,) = ev["Transfer"]  # one transfer for the accepted total
    assert transfer.value == 33 * USD
    assert token.balanceOf(operator) == 33 * USD
    assert funded.balance_of(payer.address) == 987 * USD
    assert funded.balance_of(payer2.address) == 980 * USD
    assert token.balanceOf(funded.address) == 2_000 * USD - 33 * USD
    assert funded.balance_of(payer.address) + funded.balance_of(payer2.address) == (
        token.balanceOf(funded.address)
    )


def test_nothing_accepted_means_no_transfer(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    ev = settle(funded, operator, [signed(payer, escrow_domain, operator, 0, USD)])
    assert "Transfer" not in ev and "SpendsSettled" not in ev
    assert "Transfer" not in settle(funded, operator, [])


def test_pack_settlement_refuses_what_does_not_fit(payer: LocalAccount, operator: Any) -> None:
    sig = b"\x01" * 32 + b"\x02" * 32 + b"\x1b"
    base = dict(payer=payer.address, operator=str(operator), word=1, mask=1, total=1, deadline=1)
    for field, value in (("total", 2**96), ("deadline", 2**56), ("word", 2**200)):
        bad = eip712.SpendSettlement(**{**base, field: value})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=field):
            pack_settlement(bad, sig)
