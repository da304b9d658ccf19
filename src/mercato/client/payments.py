"""Client side of Mercato's payment headers: sign spend authorizations, spend
settlements and vouchers with ``eth_account`` (the ecosystem's own EIP-712
implementation).

Nonces are allocated inside one 256-bit bitmap word at a time (random word, then
bits 0, 1, 2, ...), which is what makes settling a batch of them cheap on-chain.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from mercato.payments.wire import SignedSpendAuthorization, SignedSpendSettlement, SignedVoucher
from mercato.protocol.eip712 import (
    SpendAuthorization,
    SpendSettlement,
    escrow_domain,
    make_nonce,
    voucher_typed_data,
)

#: A random 64-bit nonce word per allocator (and per 256 nonces): distinct for every
#: client session of a payer short of ~2**32 of them, settleable by a spend settlement
#: (words below 2**200) and cheap in claim_batch's calldata (docs/protocols/spendauth.md).
WORD_BITS = 64


class NonceAllocator:
    """Unordered spend-authorization nonces, dense within a bitmap word."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._word = secrets.randbits(WORD_BITS)
        self._bit = 0

    def next(self) -> int:
        with self._lock:
            if self._bit == 256:
                self._word, self._bit = secrets.randbits(WORD_BITS), 0
            nonce = make_nonce(self._word, self._bit)
            self._bit += 1
            return nonce


@dataclass(frozen=True, slots=True)
class EscrowRef:
    chain_id: int
    escrow: str


def sign_spend_authorization(
    account: LocalAccount,
    ref: EscrowRef,
    operator: str,
    max_amount: int,
    nonce: int,
    *,
    ttl_s: int = 3600,
    deadline: int | None = None,
) -> SignedSpendAuthorization:
    auth = SpendAuthorization(
        payer=account.address,
        operator=operator,
        max_amount=max_amount,
        nonce=nonce,
        deadline=deadline if deadline is not None else int(time.time()) + ttl_s,
    )
    typed = auth.typed_data(escrow_domain(ref.chain_id, ref.escrow))
    signature = bytes(account.sign_typed_data(full_message=typed).signature)
    return SignedSpendAuthorization(auth, ref.chain_id, ref.escrow, signature)


def sign_spend_settlement(
    account: LocalAccount,
    ref: EscrowRef,
    operator: str,
    word: int,
    charges: dict[int, int],
    *,
    ttl_s: int = 3600,
    deadline: int | None = None,
) -> SignedSpendSettlement:
    """The payer's settlement of its nonces ``word << 8 | bit`` for every ``bit`` in
    ``charges`` (bit -> what that request was charged), for their sum."""
    settlement = SpendSettlement(
        payer=account.address,
        operator=operator,
        word=word,
        mask=sum(1 << bit for bit in charges),
        total=sum(charges.values()),
        deadline=deadline if deadline is not None else int(time.time()) + ttl_s,
    )
    typed = settlement.typed_data(escrow_domain(ref.chain_id, ref.escrow))
    signature = bytes(account.sign_typed_data(full_message=typed).signature)
    return SignedSpendSettlement(settlement, ref.chain_id, ref.escrow, signature)


def sign_voucher(
    account: LocalAccount, ref: EscrowRef, channel_id: bytes, cumulative_amount: int
) -> SignedVoucher:
    domain = escrow_domain(ref.chain_id, ref.escrow)
    typed = voucher_typed_data(domain, channel_id, cumulative_amount)
    signature = bytes(account.sign_typed_data(full_message=typed).signature)
    return SignedVoucher(channel_id, cumulative_amount, ref.chain_id, ref.escrow, signature)
