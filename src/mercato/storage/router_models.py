"""The router's tables (Alembic branch ``router``, migrations ``versions/r*.py``).

On-chain facts (verified: replayed from the registry's events) live apart from what
operators say about themselves (their endpoint's answers to health probes). Amounts
read from the chain are uint256 and kept as decimal text; the router's own money
(credits) is an integer number of the token's base units.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mercato.storage.models import Base

# SQLite assigns rowids only to INTEGER PRIMARY KEY columns.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class RouterSyncState(Base):
    """How far the registry's event log has been replayed, per chain and registry."""

    __tablename__ = "router_sync_state"

    source: Mapped[str] = mapped_column(String(96), primary_key=True)  # "<chain id>:<registry>"
    last_block: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class RouterBlueprint(Base):
    __tablename__ = "router_blueprints"

    blueprint_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))


class RouterChainOperator(Base):
    """An operator as the registry records it (verified on-chain)."""

    __tablename__ = "router_chain_operators"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), index=True)
    stake: Mapped[str] = mapped_column(String(78))  # uint256, decimal
    status: Mapped[int] = mapped_column(Integer)  # mercato.chain.registry.OperatorStatus
    signers: Mapped[str] = mapped_column(Text)  # JSON list of checksummed addresses
    attestation_kind: Mapped[str] = mapped_column(String(16))
    registered_block: Mapped[int] = mapped_column(BigInteger)
    last_heartbeat: Mapped[int] = mapped_column(BigInteger, default=0)
    slashed: Mapped[str] = mapped_column(String(78), default="0")
    updated_block: Mapped[int] = mapped_column(BigInteger)


class RouterOperatorReport(Base):
    """What an operator says about itself: its endpoint and its health probe answers."""

    __tablename__ = "router_operator_reports"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(256))
    backend: Mapped[str | None] = mapped_column(String(32), nullable=True)
    models: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list
    signing_address: Mapped[str | None] = mapped_column(String(42), nullable=True)
    attestation: Mapped[str | None] = mapped_column(String(32), nullable=True)
    hardware: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, if reported
    probe_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    probe_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    probed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RouterService(Base):
    """A service offer (verified on-chain)."""

    __tablename__ = "router_services"

    service_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    operator: Mapped[str] = mapped_column(String(42), index=True)
    blueprint_id: Mapped[int] = mapped_column(BigInteger)
    model: Mapped[str] = mapped_column(String(128), index=True)
    price_in_per_m: Mapped[str] = mapped_column(String(78))
    price_out_per_m: Mapped[str] = mapped_column(String(78))
    max_context: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean)


class RouterApiKey(Base):
    """An API key ``sk-<key_id>-<secret>``: only the secret's SHA-256 is kept."""

    __tablename__ = "router_api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RouterLedgerEntry(Base):
    """One line of a double-entry journal: the lines of a journal (``tx_id``) sum to 0.
    Append-only; ``idem_key`` (``<tx_id>:<line>``) makes every journal apply once."""

    __tablename__ = "router_ledger"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    idem_key: Mapped[str] = mapped_column(String(200), unique=True)
    tx_id: Mapped[str] = mapped_column(String(196), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # topup, hold, capture, release
    account: Mapped[str] = mapped_column(String(96), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # signed
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class RouterBalance(Base):
    """Running balance per ledger account, updated in the journal's transaction."""

    __tablename__ = "router_balances"

    account: Mapped[str] = mapped_column(String(96), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger)


class RouterRequest(Base):
    """History: one row per request the router answered or failed."""

    __tablename__ = "router_requests"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    payer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(16))
    stream: Mapped[bool] = mapped_column(Boolean)
    strategy: Mapped[str] = mapped_column(String(32))
    upstream_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    upstream: Mapped[str | None] = mapped_column(String(96), nullable=True)
    upstream_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    service_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    receipt_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    receipt_signer: Mapped[str | None] = mapped_column(String(42), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)  # Unix milliseconds

    __table_args__ = (
        Index("ix_router_requests_key_time", "key_id", "created_at"),
        Index("ix_router_requests_payer_time", "payer", "created_at"),
        Index("ix_router_requests_time", "created_at"),
    )


class RouterFeedback(Base):
    """A client's score (0 bad .. 1 good) of one answered request: one per request."""

    __tablename__ = "router_feedback"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    upstream: Mapped[str] = mapped_column(String(96), index=True)
    score: Mapped[float] = mapped_column(Float)
    created_at: Mapped[int] = mapped_column(BigInteger)
