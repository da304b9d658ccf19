"""Tables. Every schema change comes with an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ReceiptRow(Base):
    """A signed receipt, kept for ``GET /v1/signature/{id}`` until its retention ends."""

    __tablename__ = "receipts"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    response_sha256: Mapped[str] = mapped_column(String(64))
    signing_address: Mapped[str] = mapped_column(String(42))
    ecdsa_signature: Mapped[str] = mapped_column(String(132))
    ed25519_public_key: Mapped[str] = mapped_column(String(64))
    ed25519_signature: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[int] = mapped_column(BigInteger)
    extra: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_receipts_created_at", "created_at"),)
