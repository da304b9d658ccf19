"""Pure acceptance rules for spend authorizations and channel vouchers (no I/O).

The service gathers the facts (on-chain balances, what is already owed, the nonces
seen) and these functions decide, returning the first reason to refuse or None.
"""

from __future__ import annotations

from dataclasses import dataclass

from mercato.crypto.signers import recover_digest
from mercato.payments.errors import Reason
from mercato.payments.wire import SignedSpendAuthorization, SignedSpendSettlement, SignedVoucher
from mercato.protocol.eip712 import to_compact, typed_data_digest, voucher_struct_hash


@dataclass(frozen=True, slots=True)
class PaymentContext:
    """Who we are, on which chain, and the margin we need to settle in time."""

    operator: str
    chain_id: int
    escrow: str
    domain_separator: bytes
    settle_margin_s: int


def check_spend_authorization(
    signed: SignedSpendAuthorization, ctx: PaymentContext, estimate: int, now: int
) -> Reason | None:
    """Everything that can be checked without state: chain, operator, expiry, maximum,
    signature. The nonce and the escrow balance are checked by the service."""
    auth = signed.auth
    if signed.chain_id != ctx.chain_id or signed.escrow.lower() != ctx.escrow.lower():
        return Reason.WRONG_CHAIN
    if auth.operator.lower() != ctx.operator.lower():
        return Reason.WRONG_OPERATOR
    if auth.deadline < now + ctx.settle_margin_s:
        return Reason.EXPIRED
    if auth.max_amount < estimate:
        return Reason.MAX_BELOW_ESTIMATE
    try:
        signer = recover_digest(auth.digest(ctx.domain_separator), signed.signature)
    except ValueError:
        return Reason.BAD_SIGNATURE
    if signer.lower() != auth.payer.lower():
        return Reason.BAD_SIGNATURE
    return None


def check_spend_settlement(
    signed: SignedSpendSettlement, ctx: PaymentContext, now: int
) -> Reason | None:
    """A spend settlement's stateless checks: chain, operator, a deadline that leaves
    time to settle, something to settle, a canonical (low-s) signature by the payer.
    What it covers is checked against the stored authorizations by the store."""
    st = signed.settlement
    if signed.chain_id != ctx.chain_id or signed.escrow.lower() != ctx.escrow.lower():
        return Reason.WRONG_CHAIN
    if st.operator.lower() != ctx.operator.lower():
        return Reason.WRONG_OPERATOR
    if st.deadline < now + ctx.settle_margin_s:
        return Reason.EXPIRED
    if st.mask == 0 or st.total == 0:
        return Reason.SETTLEMENT_EMPTY
    try:
        to_compact(signed.signature)  # claim_settlements refuses high-s signatures
        signer = recover_digest(st.digest(ctx.domain_separator), signed.signature)
    except ValueError:
        return Reason.BAD_SIGNATURE
    if signer.lower() != st.payer.lower():
        return Reason.BAD_SIGNATURE
    return None


@dataclass(frozen=True, slots=True)
class ChannelFacts:
    payer: str
    operator: str
    deposit: int  # on-chain deposit (after top-ups)
    open: bool  # not closed and no payer-initiated close pending
    best_cumulative: int  # highest voucher accepted so far (0 if none)
    owed: int  # consumed by served requests + ceilings of requests in flight


def check_voucher(
    voucher: SignedVoucher,
    facts: ChannelFacts | None,
    ctx: PaymentContext,
    estimate: int,
    credit_limit: int,
) -> Reason | None:
    """A voucher raises the channel's authorization; the request it comes with may be
    served when what is owed, including this request's ceiling, stays within the
    newest voucher plus ``credit_limit`` and within the deposit."""
    if voucher.chain_id != ctx.chain_id or voucher.escrow.lower() != ctx.escrow.lower():
        return Reason.WRONG_CHAIN
    if facts is None:
        return Reason.CHANNEL_UNKNOWN
    if facts.operator.lower() != ctx.operator.lower():
        return Reason.WRONG_OPERATOR
    if not facts.open:
        return Reason.CHANNEL_NOT_OPEN
    if voucher.cumulative_amount <= facts.best_cumulative:
        return Reason.VOUCHER_NOT_INCREASING
    if voucher.cumulative_amount > facts.deposit:
        return Reason.VOUCHER_EXCEEDS_DEPOSIT
    digest = typed_data_digest(
        ctx.domain_separator, voucher_struct_hash(voucher.channel_id, voucher.cumulative_amount)
    )
    try:
        signer = recover_digest(digest, voucher.signature)
    except ValueError:
        return Reason.BAD_SIGNATURE
    if signer.lower() != facts.payer.lower():
        return Reason.BAD_SIGNATURE
    owed_after = facts.owed + estimate
    if owed_after > facts.deposit:
        return Reason.VOUCHER_EXCEEDS_DEPOSIT
    if owed_after > voucher.cumulative_amount + credit_limit:
        return Reason.CREDIT_LIMIT
    return None
