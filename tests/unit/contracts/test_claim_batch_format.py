"""claim_batch's grouped calldata: one payer and one nonce word per group, claims that
carry only their bit, one balance debit and one bitmap write per group; malformed
batches revert, claims placed in the wrong group never pay."""

from __future__ import annotations

from typing import Any

import boa
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.chain.batch import MAX_GROUP, pack_batch, pack_word, unpack_word
from mercato.protocol import eip712

from .conftest import USD, now, sign_spend

pytestmark = pytest.mark.chain

NONCE_USED, BAD_SIGNATURE = 3, 5


def claim_batch(escrow: Any, operator: Any, groups: list[Any], claims: list[Any]) -> dict[str, Any]:
    with boa.env.prank(operator):
        escrow.claim_batch(groups, claims)
    out: dict[str, Any] = {}
    for e in escrow.get_logs():
        out.setdefault(type(e).__name__, []).append(e)
    return out


def signed(
    payer: LocalAccount, domain: dict[str, Any], operator: Any, nonces: list[int], amount: int
) -> list[Any]:
    items = []
    for nonce in nonces:
        auth, sig = sign_spend(payer, domain, operator, 2 * amount, nonce, now() + 600)
        items.append((auth, amount, sig))
    return items


def test_one_group_pays_exactly_once_per_bit(
    funded: Any, token: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any]
) -> None:
    """Forty claims of one payer in word 3, one of them presented twice: one group, one
    SpendsClaimed, balances move by exactly the accepted claims."""
    items = signed(payer, escrow_domain, operator, [3 * 256 + i for i in range(40)], 12_345)
    groups, claims = pack_batch([*items[:20], items[7], *items[20:]])
    assert groups == [(int(payer.address, 16), 3 << 8 | 41)]
    before = funded.balance_of(payer.address)
    ev = claim_batch(funded, operator, groups, claims)
    assert [(e.nonce, e.reason) for e in ev["ClaimRejected"]] == [(3 * 256 + 7, NONCE_USED)]
    (spent,) = ev["SpendsClaimed"]
    assert (spent.payer, spent.word, spent.mask, spent.amount) == (
        payer.address,
        3,
        2**40 - 1,
        40 * 12_345,
    )
    assert (ev["BatchSettled"][0].count, ev["BatchSettled"][0].total) == (40, 40 * 12_345)
    assert funded.balance_of(payer.address) == before - 40 * 12_345
    assert token.balanceOf(operator) == 40 * 12_345
    assert funded.nonce_bitmap(payer.address, 3) == 2**40 - 1


def test_a_claim_in_another_payers_or_words_group_never_pays(
    funded: Any,
    payer: LocalAccount,
    payer2: LocalAccount,
    operator: Any,
    escrow_domain: dict[str, Any],
) -> None:
    """The group supplies the payer and the word that the signature is checked against:
    moving a claim to another group changes the signed message and it is refused."""
    mine = signed(payer, escrow_domain, operator, [5], USD)[0]
    theirs = signed(payer2, escrow_domain, operator, [6], USD)[0]
    _, claims = pack_batch([mine, theirs])
    p1 = int(payer.address, 16)
    ev = claim_batch(funded, operator, [(p1, 0 << 8 | 2)], claims)  # payer2's claim in payer's
    assert [(e.payer, e.nonce, e.reason) for e in ev["ClaimRejected"]] == [
        (payer.address, 6, BAD_SIGNATURE)
    ]
    assert not funded.is_nonce_used(payer.address, 6)
    assert not funded.is_nonce_used(payer2.address, 6)
    other = signed(payer, escrow_domain, operator, [7], USD)
    ev = claim_batch(funded, operator, [(p1, 1 << 8 | 1)], pack_batch(other)[1])  # word 1
    assert [(e.nonce, e.reason) for e in ev["ClaimRejected"]] == [(256 + 7, BAD_SIGNATURE)]
    assert funded.nonce_bitmap(payer.address, 1) == 0 and not funded.is_nonce_used(payer.address, 7)


def test_payer_zero_continues_the_previous_groups_payer(
    funded: Any,
    payer: LocalAccount,
    payer2: LocalAccount,
    operator: Any,
    escrow_domain: dict[str, Any],
) -> None:
    """Payer 0 means "the previous group's payer" (its balance stays cached); as the first
    group it is address 0, whose balance is always 0."""
    a = signed(payer, escrow_domain, operator, [1, 300], USD)  # words 0 and 1
    b = signed(payer2, escrow_domain, operator, [2], USD)
    groups, claims = pack_batch([*a, *b])
    p1, p2 = int(payer.address, 16), int(payer2.address, 16)
    assert groups == [(p1, 0 << 8 | 1), (0, 1 << 8 | 1), (p2, 0 << 8 | 1)]
    ev = claim_batch(funded, operator, groups, claims)
    assert "ClaimRejected" not in ev
    assert [(e.payer, e.word, e.amount) for e in ev["SpendsClaimed"]] == [
        (payer.address, 0, USD),
        (payer.address, 1, USD),
        (payer2.address, 0, USD),
    ]
    assert funded.balance_of(payer.address) == 998 * USD
    assert funded.balance_of(payer2.address) == 999 * USD
    # payer2's claim elided behind payer's group is checked as payer's: refused
    c = signed(payer2, escrow_domain, operator, [3], USD)
    d = signed(payer, escrow_domain, operator, [4], USD)
    _, claims = pack_batch([*d, *c])
    ev = claim_batch(funded, operator, [(p1, 0 << 8 | 1), (0, 0 << 8 | 1)], claims)
    assert [(e.payer, e.nonce, e.reason) for e in ev["ClaimRejected"]] == [
        (payer.address, 3, BAD_SIGNATURE)
    ]
    assert not funded.is_nonce_used(payer2.address, 3)


@pytest.mark.parametrize(
    "groups",
    [
        [],  # claims without a group
        [(1, 0)],  # an empty group
        [(1, 0 << 8 | 1)],  # counts cover fewer claims than sent
        [(1, 0 << 8 | 3)],  # ... more claims than sent
        [(1, 0 << 8 | 2), (1, 0 << 8 | 1)],  # a group left over
        [(2**160, 0 << 8 | 2)],  # a payer that does not fit an address
    ],
)
def test_malformed_batches_revert(
    funded: Any, payer: LocalAccount, operator: Any, escrow_domain: dict[str, Any], groups: Any
) -> None:
    items = signed(payer, escrow_domain, operator, [1, 2], USD)
    good_groups, claims = pack_batch(items)
    fixed = [(int(payer.address, 16) if p == 1 else p, wc) for p, wc in groups]
    with boa.env.prank(operator), boa.reverts():
        funded.claim_batch(fixed, claims)
    assert funded.balance_of(payer.address) == 1_000 * USD
    claim_batch(funded, operator, good_groups, claims)  # the same claims, well formed
    assert funded.balance_of(payer.address) == 998 * USD


def test_pack_word_layout() -> None:
    word = pack_word(0x6955B900, 2_000_000, 1_234_567, 7)
    assert word == 0x6955B900 << 200 | 2_000_000 << 104 | 1_234_567 << 8 | 7
    assert unpack_word(word) == (0x6955B900, 2_000_000, 1_234_567, 7)
    top = pack_word(2**56 - 1, 2**96 - 1, 2**96 - 1, 255)
    assert top == 2**256 - 1 and unpack_word(top) == (2**56 - 1, 2**96 - 1, 2**96 - 1, 255)


def test_pack_batch_groups_runs_in_order_and_splits_long_ones() -> None:
    key = Account.from_key(b"\x01" * 32)
    other = Account.from_key(b"\x02" * 32)
    sig = bytes(Account.unsafe_sign_hash(b"\x03" * 32, key.key).signature)

    def item(acct: LocalAccount, nonce: int) -> Any:
        return (eip712.SpendAuthorization(acct.address, key.address, 9, nonce, 1), 1, sig)

    runs = [item(key, 256 + i % 256) for i in range(MAX_GROUP + 3)]  # repeats: fine here
    groups, claims = pack_batch([*runs, item(other, 256), item(key, 257), item(key, 2)])
    k, o = int(key.address, 16), int(other.address, 16)
    assert groups == [
        (k, 1 << 8 | MAX_GROUP),
        (0, 1 << 8 | 3),  # payer 0: the previous group's
        (o, 1 << 8 | 1),
        (k, 1 << 8 | 1),  # the same payer and word again later: a new group
        (0, 0 << 8 | 1),
    ]
    assert len(claims) == MAX_GROUP + 6
    assert [unpack_word(c[0])[3] for c in claims[-3:]] == [0, 1, 2]
