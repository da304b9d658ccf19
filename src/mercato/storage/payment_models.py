"""Operator-side payment state: every authorization and charge, persisted before the
response finishes, so a crash never loses a served request's payment."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mercato.storage.models import Base

# Status of a payment row, in order of its life.
RESERVED = "reserved"  # accepted, request being served; amount unknown yet
CLAIMABLE = "claimable"  # served; amount known; waiting for the settlement batch
SUBMITTED = "submitted"  # in a transaction sent on-chain (tx_hash set)
SETTLED = "settled"  # paid on-chain (or nothing to pay: amount 0)
REJECTED = "rejected"  # the chain refused it (reason set)
VOID = "void"  # never served (the operator died mid-request): nobody pays


class SpendAuthorizationRow(Base):
    __tablename__ = "pay_spend_authorizations"

    payer: Mapped[str] = mapped_column(String(42), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(78), primary_key=True)  # uint256, decimal
    max_amount: Mapped[str] = mapped_column(String(40))  # uint128, decimal
    deadline: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(132))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_pay_spend_status", "status", "deadline"),)


class SpendSettlementRow(Base):
    """A payer's signed spend settlement of some of its authorizations to this operator
    (one nonce word; docs/protocols/spendauth.md, "Spend settlements"). The live ones of
    a (payer, word) have disjoint masks; a stored, unsubmitted one is replaced by one
    whose mask is a superset (it becomes REJECTED, reason "replaced"). Status: CLAIMABLE
    (stored) -> SUBMITTED -> SETTLED, or REJECTED (its nonces are claimed one by one)."""

    __tablename__ = "pay_spend_settlements"

    payer: Mapped[str] = mapped_column(String(42), primary_key=True)
    word: Mapped[str] = mapped_column(String(78), primary_key=True)  # decimal, < 2**200
    mask: Mapped[str] = mapped_column(String(78), primary_key=True)  # uint256, decimal
    total: Mapped[str] = mapped_column(String(40))  # uint96, decimal
    deadline: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(132))
    status: Mapped[str] = mapped_column(String(16))
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_pay_settlement_status", "status", "deadline"),)


class ChannelRow(Base):
    """What this operator knows of one payment channel it is paid through."""

    __tablename__ = "pay_channels"

    channel_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    payer: Mapped[str] = mapped_column(String(42))
    best_cumulative: Mapped[int] = mapped_column(BigInteger, default=0)
    best_signature: Mapped[str | None] = mapped_column(String(132), nullable=True)
    consumed: Mapped[int] = mapped_column(BigInteger, default=0)  # metered, served
    settled: Mapped[int] = mapped_column(BigInteger, default=0)  # claimed on-chain
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ChannelChargeRow(Base):
    """Append-only: one row per served request paid through a channel."""

    __tablename__ = "pay_channel_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(String(66), index=True)
    request_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class X402PaymentRow(Base):
    """An x402 ``exact`` payment: a signed EIP-3009 transfer we submit in a batch later."""

    __tablename__ = "pay_x402"

    payer: Mapped[str] = mapped_column(String(42), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(66), primary_key=True)  # bytes32 hex
    pay_to: Mapped[str] = mapped_column(String(42))
    value: Mapped[int] = mapped_column(BigInteger)
    valid_after: Mapped[int] = mapped_column(BigInteger)
    valid_before: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(132))
    status: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
