"""``PaymentEscrow.claim_batch`` and ``claim_settlements`` arguments, pure: claims
grouped by (payer, nonce word), each packed into one 32-byte word beside its EIP-2098
signature; spend settlements packed into three words beside theirs.

The format is docs/protocols/spendauth.md, "Settling: claim_batch". It only changes how
an operator submits what payers signed: the signed ``SpendAuthorization`` (domain, type,
fields) is untouched, so an authorization whose fields do not fit the packing cannot be
settled and :func:`check_claim` says so before anything is sent. The same holds for
``SpendSettlement`` (docs/protocols/spendauth.md, "Spend settlements") and
:func:`check_settlement`.
"""

from __future__ import annotations

from collections.abc import Iterable

from mercato.protocol.eip712 import SpendAuthorization, SpendSettlement, to_compact

DEADLINE_BITS = 56  # unix seconds, up to the year ~2.3 billion
AMOUNT_BITS = 96  # base units; 6-decimal mUSD: up to ~7.9e22 units = 7.9e16 mUSD
MAX_GROUP = 255  # claims per group: the count takes the low byte of `word_count`
SETTLEMENT_WORD_BITS = 200  # a settlement's nonce word: nonces below 2**208

GroupTuple = tuple[int, int]  # (payer or 0 for the previous group's, (word << 8) | count)
ClaimTuple = tuple[int, bytes, bytes]  # (packed, r, vs)
SignedClaim = tuple[SpendAuthorization, int, bytes]  # (authorization, amount, signature)
# (payer_total, word_deadline, mask, r, vs)
SettlementTuple = tuple[int, int, int, bytes, bytes]


def check_claim(auth: SpendAuthorization, amount: int) -> None:
    """Raise ValueError unless the claim's fields fit the batch packing (nonces always fit:
    any uint256 splits into a 248-bit word and an 8-bit bit index)."""
    if not 0 <= auth.deadline < 2**DEADLINE_BITS:
        raise ValueError(f"deadline must be below 2**{DEADLINE_BITS}, got {auth.deadline}")
    if not 0 <= auth.max_amount < 2**AMOUNT_BITS:
        raise ValueError(f"maxAmount must be below 2**{AMOUNT_BITS}, got {auth.max_amount}")
    if not 0 <= amount < 2**AMOUNT_BITS:
        raise ValueError(f"amount must be below 2**{AMOUNT_BITS}, got {amount}")
    if not 0 <= auth.nonce < 2**256:
        raise ValueError("nonce must be a uint256")


def fits(auth: SpendAuthorization, amount: int) -> bool:
    try:
        check_claim(auth, amount)
    except ValueError:
        return False
    return True


def pack_word(deadline: int, max_amount: int, amount: int, bit: int) -> int:
    """``(deadline << 200) | (max_amount << 104) | (amount << 8) | bit``."""
    return (deadline << 200) | (max_amount << 104) | (amount << 8) | bit


def unpack_word(packed: int) -> tuple[int, int, int, int]:
    """``(deadline, max_amount, amount, bit)`` of a packed claim word."""
    mask = 2**AMOUNT_BITS - 1
    return packed >> 200, (packed >> 104) & mask, (packed >> 8) & mask, packed & 255


def pack_claim(auth: SpendAuthorization, amount: int, signature: bytes) -> ClaimTuple:
    """One ``PaymentEscrow.Claim`` ABI tuple ``(packed, r, vs)``; ``signature`` is 65 bytes
    ``r || s || v`` or 64 compact. Raises ValueError for fields that do not fit or a
    high-s signature."""
    check_claim(auth, amount)
    r, vs = to_compact(signature)
    return pack_word(auth.deadline, auth.max_amount, amount, auth.nonce & 255), r, vs


def pack_batch(claims: Iterable[SignedClaim]) -> tuple[list[GroupTuple], list[ClaimTuple]]:
    """``claim_batch(groups, claims)`` arguments, in the given order: consecutive claims of
    one payer in one nonce word share a group, and a group of the previous group's payer
    gives payer 0. Sort by (payer, nonce) first for the cheapest batch. Raises
    ValueError like :func:`pack_claim`."""
    groups: list[GroupTuple] = []
    packed: list[ClaimTuple] = []
    current: tuple[int, int] | None = None
    for auth, amount, signature in claims:
        packed.append(pack_claim(auth, amount, signature))
        key = (int(auth.payer, 16), auth.nonce >> 8)
        if key == current and groups[-1][1] & 255 < MAX_GROUP:
            groups[-1] = (groups[-1][0], groups[-1][1] + 1)
            continue
        same_payer = current is not None and current[0] == key[0]
        groups.append((0 if same_payer else key[0], (key[1] << 8) | 1))
        current = key
    return groups, packed


# --- spend settlements (claim_settlements) -------------------------------------------


def check_settlement(settlement: SpendSettlement) -> None:
    """Raise ValueError unless the settlement's fields fit ``claim_settlements``'
    packing: total < 2**96, deadline < 2**56, word < 2**200, mask a uint256."""
    if not 0 <= settlement.total < 2**AMOUNT_BITS:
        raise ValueError(f"total must be below 2**{AMOUNT_BITS}, got {settlement.total}")
    if not 0 <= settlement.deadline < 2**DEADLINE_BITS:
        raise ValueError(f"deadline must be below 2**{DEADLINE_BITS}, got {settlement.deadline}")
    if not 0 <= settlement.word < 2**SETTLEMENT_WORD_BITS:
        raise ValueError(f"word must be below 2**{SETTLEMENT_WORD_BITS}, got {settlement.word}")
    if not 0 <= settlement.mask < 2**256:
        raise ValueError("mask must be a uint256")


def settlement_fits(settlement: SpendSettlement) -> bool:
    try:
        check_settlement(settlement)
    except ValueError:
        return False
    return True


def pack_settlement(settlement: SpendSettlement, signature: bytes) -> SettlementTuple:
    """One ``PaymentEscrow.Settlement`` ABI tuple ``(payer_total, word_deadline, mask, r,
    vs)``: ``(total << 160) | payer``, ``(deadline << 200) | word``, the mask, and the
    EIP-2098 signature. Raises ValueError for fields that do not fit or a high-s
    signature."""
    check_settlement(settlement)
    r, vs = to_compact(signature)
    payer = int(settlement.payer, 16)
    if not 0 <= payer < 2**160:
        raise ValueError(f"not an address: {settlement.payer!r}")
    return (
        (settlement.total << 160) | payer,
        (settlement.deadline << SETTLEMENT_WORD_BITS) | settlement.word,
        settlement.mask,
        r,
        vs,
    )


def unpack_settlement(packed: SettlementTuple) -> tuple[int, int, int, int, int]:
    """``(payer, total, word, mask, deadline)`` of a packed settlement (payer as int)."""
    payer_total, word_deadline, mask, _r, _vs = packed
    return (
        payer_total & (2**160 - 1),
        payer_total >> 160,
        word_deadline & (2**SETTLEMENT_WORD_BITS - 1),
        mask,
        word_deadline >> SETTLEMENT_WORD_BITS,
    )
