"""Why a payment was refused: one stable machine code per reason, all HTTP 402; and why
a spend settlement was refused (the same codes plus the ``settlement_*`` ones, HTTP 422)."""

from __future__ import annotations

from enum import StrEnum

from mercato.errors import InvalidRequest, PaymentRequired


class Reason(StrEnum):
    PAYMENT_REQUIRED = "payment_required"  # nothing usable was sent
    MALFORMED = "malformed_payment"  # undecodable header or missing fields
    BAD_SIGNATURE = "invalid_signature"  # does not recover to the claimed payer (forged)
    WRONG_OPERATOR = "wrong_operator"  # authorizes someone else
    WRONG_CHAIN = "wrong_chain"  # another chain id or escrow/token contract
    EXPIRED = "authorization_expired"  # deadline passed or too close to settle in time
    MAX_BELOW_ESTIMATE = "max_below_estimate"  # cannot cover this request's ceiling
    NONCE_USED = "nonce_used"  # replayed authorization
    INSUFFICIENT_ESCROW = "insufficient_escrow"  # balance minus unsettled claims too low
    CHANNEL_UNKNOWN = "channel_unknown"
    CHANNEL_NOT_OPEN = "channel_not_open"  # closing or closed
    VOUCHER_NOT_INCREASING = "voucher_not_increasing"
    VOUCHER_EXCEEDS_DEPOSIT = "voucher_exceeds_deposit"
    CREDIT_LIMIT = "channel_credit_exceeded"  # voucher too far behind what is owed
    AUTHORIZATION_REUSED = "authorization_reused"  # x402 EIP-3009 nonce seen before
    AMOUNT_TOO_LOW = "amount_too_low"  # x402 exact payment below the price
    UNSUPPORTED = "unsupported_payment"  # scheme or network we do not accept
    CHAIN_UNAVAILABLE = "payment_backend_unavailable"  # cannot read chain state now
    # spend settlements (POST /v1/payments/settlements)
    SETTLEMENT_EMPTY = "settlement_empty"  # mask or total is zero
    SETTLEMENT_UNKNOWN_NONCE = "settlement_nonce_unknown"  # not a captured authorization here
    SETTLEMENT_TOTAL = "settlement_total_mismatch"  # total != sum of the charges
    SETTLEMENT_CONFLICT = "settlement_conflict"  # overlaps one stored that it cannot replace


class PaymentRejected(PaymentRequired):
    """402 with a machine-readable ``code`` (a :class:`Reason`); nothing was generated."""

    def __init__(self, reason: Reason, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message, code=reason.value, headers=headers)
        self.reason = reason


class SettlementRefused(InvalidRequest):
    """422 with a machine-readable ``code`` (a :class:`Reason`); nothing was stored."""

    status = 422

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message, code=reason.value)
        self.reason = reason
