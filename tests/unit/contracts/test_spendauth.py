"""PaymentEscrow spend authorizations: the issue's acceptance cases and batch semantics.

Signatures come from ``eth_account``'s ``sign_typed_data`` over the typed data built by
``mercato.protocol.eip712`` exactly as docs/protocols/spendauth.md gives it.
"""

from __future__ import annotations

from typing import Any

import boa
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.batch import SignedClaim, pack_batch
from mercato.protocol import eip712

from .conftest import USD, account, logs, now, sign_spend, sign_typed

pytestmark = pytest.mark.chain

EXPIRED, OVER_MAX, NONCE_USED, INSUFFICIENT, BAD_SIGNATURE, ZERO_AMOUNT = 1, 2, 3, 4, 5, 6


def settle(escrow: Any, operator: Any, claims: list[SignedClaim]) -> dict[str, list[Any]]:
    """claim_batch with ``claims`` grouped and packed in the given order."""
    return settle_raw(escrow, operator, *pack_batch(claims))


def settle_raw(
    escrow: Any, operator: Any, groups: list[Any], claims: list[Any]
) -> dict[str, list[Any]]:
    with boa.env.prank(operator):
        escrow.claim_batch(groups, claims)
    out: dict[str, list[Any]] = {}
    for e in escrow.get_logs():
        out.setdefault(type(e).__name__, []).append(e)
    return out


def rejections(events: dict[str, list[Any]]) -> list[tuple[int, int]]:
    return [(e.nonce, e.reason) for e in events.get("ClaimRejected", [])]


def test_authorization_signed_from_the_doc_typed_data_is_accepted(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    escrow = funded
    deadline = now() + 300
    typed = eip712.spend_authorization_typed_data(
        escrow_domain, payer.address, str(operator), 5 * USD, 42, deadline
    )
    signed = Account.sign_typed_data(payer.key, full_message=typed)
    assert signed.message_hash == escrow.spend_authorization_digest(
        payer.address, operator, 5 * USD, 42, deadline
    )
    auth = eip712.SpendAuthorization(payer.address, str(operator), 5 * USD, 42, deadline)
    ev = settle(escrow, operator, [(auth, 3 * USD, bytes(signed.signature))])
    assert "ClaimRejected" not in ev
    (spent,) = ev["SpendsClaimed"]
    assert (spent.payer, spent.operator, spent.word, spent.mask, spent.amount) == (
        payer.address,
        operator,
        0,
        1 << 42,
        3 * USD,
    )
    (batch,) = ev["BatchSettled"]
    assert (batch.operator, batch.count, batch.total) == (operator, 1, 3 * USD)
    (transfer,) = ev["Transfer"]
    assert (transfer.sender, transfer.receiver, transfer.value) == (
        escrow.address,
        operator,
        3 * USD,
    )
    assert token.balanceOf(operator) == 3 * USD
    assert escrow.balance_of(payer.address) == 997 * USD
    assert escrow.is_nonce_used(payer.address, 42)
    assert escrow.nonce_bitmap(payer.address, 0) == 1 << 42


def test_replayed_authorization_is_rejected(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    escrow = funded
    auth, sig = sign_spend(payer, escrow_domain, operator, USD, 7, now() + 300)
    claim = (auth, USD, sig)
    settle(escrow, operator, [claim])
    ev = settle(escrow, operator, [claim])
    assert rejections(ev) == [(7, NONCE_USED)]
    assert ev["BatchSettled"][0].count == 0 and "Transfer" not in ev
    # twice in one batch: the second copy is rejected
    auth, sig = sign_spend(payer, escrow_domain, operator, USD, 8, now() + 300)
    claim = (auth, USD, sig)
    ev = settle(escrow, operator, [claim, claim])
    assert rejections(ev) == [(8, NONCE_USED)]
    assert ev["BatchSettled"][0].total == USD
    assert token.balanceOf(operator) == 2 * USD


def test_authorization_for_another_operator_is_rejected(
    funded: Any,
    token: Any,
    payer: LocalAccount,
    operator: Any,
    operator2: Any,
    escrow_domain: dict[str, Any],
) -> None:
    auth, sig = sign_spend(payer, escrow_domain, operator, USD, 1, now() + 300)
    ev = settle(funded, operator2, [(auth, USD, sig)])
    assert rejections(ev) == [(1, BAD_SIGNATURE)]
    assert token.balanceOf(operator2) == 0
    assert not funded.is_nonce_used(payer.address, 1)  # still usable by the right operator
    assert rejections(settle(funded, operator, [(auth, USD, sig)])) == []


def test_expired_authorization_is_rejected(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    deadline = now() + 60
    auth, sig = sign_spend(payer, escrow_domain, operator, USD, 1, deadline)
    auth2, sig2 = sign_spend(payer, escrow_domain, operator, USD, 2, deadline)
    boa.env.time_travel(seconds=60)  # block.timestamp == deadline: still valid
    assert rejections(settle(funded, operator, [(auth, USD, sig)])) == []
    boa.env.time_travel(seconds=1)
    ev = settle(funded, operator, [(auth2, USD, sig2)])
    assert rejections(ev) == [(2, EXPIRED)]


def test_claim_above_its_maximum_is_rejected(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    auth, sig = sign_spend(payer, escrow_domain, operator, USD, 1, now() + 300)
    ev = settle(funded, operator, [(auth, USD + 1, sig)])
    assert rejections(ev) == [(1, OVER_MAX)]
    assert token.balanceOf(operator) == 0
    # a claim below the maximum settles only what was used
    ev = settle(funded, operator, [(auth, USD // 3, sig)])
    assert ev["BatchSettled"][0].total == USD // 3
    assert funded.balance_of(payer.address) == 1_000 * USD - USD // 3


def test_forged_and_tampered_claims_never_pay(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    mallory = account(0x666)
    deadline = now() + 300
    # signed by someone else in the payer's name
    forged = eip712.SpendAuthorization(payer.address, str(operator), USD, 1, deadline)
    forged_sig = sign_typed(mallory, forged.typed_data(escrow_domain))
    # a genuine signature presented with a larger max_amount / later deadline / other nonce
    _, sig = sign_spend(payer, escrow_domain, operator, USD, 2, deadline)
    bigger = eip712.SpendAuthorization(payer.address, str(operator), 2 * USD, 2, deadline)
    later = eip712.SpendAuthorization(payer.address, str(operator), USD, 2, deadline + 1)
    other_nonce = eip712.SpendAuthorization(payer.address, str(operator), USD, 3, deadline)
    ev = settle(
        funded,
        operator,
        [
            (forged, USD, forged_sig),
            (bigger, 2 * USD, sig),
            (later, USD, sig),
            (other_nonce, USD, sig),
        ],
    )
    assert rejections(ev) == [
        (1, BAD_SIGNATURE),
        (2, BAD_SIGNATURE),
        (2, BAD_SIGNATURE),
        (3, BAD_SIGNATURE),
    ]
    assert ev["BatchSettled"][0].count == 0
    assert token.balanceOf(operator) == 0
    assert funded.nonce_bitmap(payer.address, 0) == 0


def test_high_s_signature_is_rejected(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    auth, sig = sign_spend(payer, escrow_domain, operator, USD, 1, now() + 300)
    v, r, s = eip712.split_signature(sig)
    high_s = eip712.SECP256K1_N - s  # the malleable twin: same signer, flipped parity
    vs = ((1 - (v - 27)) << 255) | high_s
    groups, claims = pack_batch([(auth, USD, sig)])
    claims[0] = (claims[0][0], claims[0][1], vs.to_bytes(32, "big"))
    assert rejections(settle_raw(funded, operator, groups, claims)) == [(1, BAD_SIGNATURE)]
    assert funded.balance_of(payer.address) == 1_000 * USD
    with pytest.raises(ValueError, match="high-s"):
        eip712.to_compact(r.to_bytes(32, "big") + high_s.to_bytes(32, "big") + bytes([55 - v]))


def test_insufficient_balance_and_zero_amount(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    auth, sig = sign_spend(payer, escrow_domain, operator, 2_000 * USD, 1, now() + 300)
    auth2, sig2 = sign_spend(payer, escrow_domain, operator, USD, 2, now() + 300)
    ev = settle(funded, operator, [(auth, 1_000 * USD + 1, sig), (auth2, 0, sig2)])
    assert rejections(ev) == [(1, INSUFFICIENT), (2, ZERO_AMOUNT)]
    # exactly the balance is fine, and the next claim then finds it empty
    auth3, sig3 = sign_spend(payer, escrow_domain, operator, USD, 3, now() + 300)
    ev = settle(funded, operator, [(auth, 1_000 * USD, sig), (auth3, 1, sig3)])
    assert rejections(ev) == [(3, INSUFFICIENT)]
    assert funded.balance_of(payer.address) == 0


def test_mixed_batch_many_payers_and_words(
    funded: Any,
    token: Any,
    payer: LocalAccount,
    payer2: LocalAccount,
    operator: Any,
    escrow_domain: dict[str, Any],
) -> None:
    """Good claims settle, bad ones are skipped; groups switch payer and nonce word; a
    payer that reappears later in the batch is read back from storage (no double
    spend), and so is a nonce word: the replay in a later group is refused."""
    d = now() + 300
    w = 1 << 8  # nonce word 1
    plan = [
        (payer, w + 0, USD, True),
        (payer, w + 1, USD, True),
        (payer, 2 * w + 5, 2 * USD, True),  # word 2
        (payer2, w + 0, 3 * USD, True),  # same nonce number, other payer: independent
        (payer, w + 1, USD, False),  # replay of an earlier claim in this batch
        (payer, w + 2, 4 * USD, True),  # back to payer / word 1
        (payer2, 7, 5 * USD, True),  # word 0
    ]
    items = []
    for acct, nonce, amount, _ok in plan:
        auth, sig = sign_spend(acct, escrow_domain, operator, amount, nonce, d)
        items.append((auth, amount, sig))
    groups, claims = pack_batch(items)
    p1, p2 = int(payer.address, 16), int(payer2.address, 16)
    assert groups == [
        (p1, 1 << 8 | 2),
        (0, 2 << 8 | 1),
        (p2, 1 << 8 | 1),
        (p1, 1 << 8 | 2),
        (p2, 0 << 8 | 1),
    ]  # fmt: skip  (0: the previous group's payer)
    assert [c[0] & 255 for c in claims] == [0, 1, 5, 0, 1, 2, 7]  # only the bit per claim
    ev = settle_raw(funded, operator, groups, claims)
    assert rejections(ev) == [(w + 1, NONCE_USED)]
    runs = [(e.payer, e.word, e.mask, e.amount) for e in ev["SpendsClaimed"]]
    assert runs == [
        (payer.address, 1, 0b11, 2 * USD),
        (payer.address, 2, 1 << 5, 2 * USD),
        (payer2.address, 1, 1, 3 * USD),
        (payer.address, 1, 0b100, 4 * USD),
        (payer2.address, 0, 1 << 7, 5 * USD),
    ]
    assert (ev["BatchSettled"][0].count, ev["BatchSettled"][0].total) == (6, 16 * USD)
    assert len(ev["Transfer"]) == 1
    assert token.balanceOf(operator) == 16 * USD
    assert funded.balance_of(payer.address) == 1_000 * USD - 8 * USD
    assert funded.balance_of(payer2.address) == 1_000 * USD - 8 * USD
    assert funded.nonce_bitmap(payer.address, 1) == 0b111
    assert funded.nonce_bitmap(payer.address, 2) == 1 << 5
    assert funded.nonce_bitmap(payer2.address, 1) == 1
    assert funded.nonce_bitmap(payer2.address, 0) == 1 << 7


def test_payer_zero_is_rejected(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    auth, sig = sign_spend(payer, escrow_domain, operator, USD, 1, now() + 300)
    groups, claims = pack_batch([(auth, USD, sig)])
    ev = settle_raw(funded, operator, [(0, groups[0][1])], claims)
    assert rejections(ev) == [(1, INSUFFICIENT)]
    assert ev["ClaimRejected"][0].payer == "0x" + "00" * 20
    assert not funded.is_nonce_used(payer.address, 1)


def test_empty_and_oversized_batches(funded: Any, operator: Any) -> None:
    ev = settle(funded, operator, [])
    assert (ev["BatchSettled"][0].count, ev["BatchSettled"][0].total) == (0, 0)
    assert "Transfer" not in ev
    with boa.env.prank(operator), boa.reverts():
        funded.claim_batch([(1, 1)] * 129, [(0, b"\x00" * 32, b"\x00" * 32)] * 129)


def test_cancel_and_invalidate_nonces(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    escrow = funded
    with boa.env.prank(payer.address):
        escrow.cancel_nonce(300)
        ev = logs(escrow, "NoncesInvalidated")[0]
        assert (ev.payer, ev.word, ev.mask) == (payer.address, 1, 1 << 44)
        escrow.invalidate_nonces(5, 0b1010)
        ev = logs(escrow, "NoncesInvalidated")[0]
        assert (ev.word, ev.mask) == (5, 0b1010)
    assert escrow.is_nonce_used(payer.address, 300)
    assert escrow.is_nonce_used(payer.address, 5 * 256 + 1)
    assert not escrow.is_nonce_used(payer.address, 5 * 256 + 2)
    assert escrow.nonce_bitmap(payer.address, 5) == 0b1010
    auth, sig = sign_spend(payer, escrow_domain, operator, USD, 300, now() + 300)
    assert rejections(settle(escrow, operator, [(auth, USD, sig)])) == [(300, NONCE_USED)]


def test_digest_view_matches_python(funded: Any, payer: LocalAccount, operator: Any) -> None:
    sep = funded.DOMAIN_SEPARATOR()
    for nonce in (0, 255, 256, 2**256 - 1):
        assert funded.spend_authorization_digest(payer.address, operator, 9, nonce, 10) == (
            eip712.spend_authorization_digest(sep, payer.address, str(operator), 9, nonce, 10)
        )


def test_large_nonce_and_amount_limits(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    """The widest values the packing carries settle exactly; wider ones are refused by
    the encoder (the signed fields are uint256, the batch word is not)."""
    nonce = 2**256 - 1
    top, far = 2**96 - 1, 2**56 - 1
    auth, sig = sign_spend(payer, escrow_domain, operator, top, nonce, far)
    ev = settle(funded, operator, [(auth, USD, sig)])
    assert ev["SpendsClaimed"][0].word == 2**248 - 1 and ev["SpendsClaimed"][0].mask == 1 << 255
    assert ev["SpendsClaimed"][0].amount == USD
    assert funded.is_nonce_used(payer.address, nonce)
    for max_amount, deadline, amount, match in [
        (2**96, far, 1, "maxAmount must be below 2\\*\\*96"),
        (top, 2**56, 1, "deadline must be below 2\\*\\*56"),
        (top, far, 2**96, "amount must be below 2\\*\\*96"),
    ]:
        wide = eip712.SpendAuthorization(payer.address, str(operator), max_amount, 1, deadline)
        with pytest.raises(ValueError, match=match):
            pack_batch([(wide, amount, sig)])
