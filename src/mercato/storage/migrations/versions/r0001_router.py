"""router: registry mirror, operator reports, API keys, credits ledger, history

Revision ID: r0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = ("router",)
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "router_sync_state",
        sa.Column("source", sa.String(96), primary_key=True),
        sa.Column("last_block", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "router_blueprints",
        sa.Column("blueprint_id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
    )
    op.create_table(
        "router_chain_operators",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("stake", sa.String(78), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("signers", sa.Text, nullable=False),
        sa.Column("attestation_kind", sa.String(16), nullable=False),
        sa.Column("registered_block", sa.BigInteger, nullable=False),
        sa.Column("last_heartbeat", sa.BigInteger, nullable=False),
        sa.Column("slashed", sa.String(78), nullable=False),
        sa.Column("updated_block", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_router_chain_operators_slug", "router_chain_operators", ["slug"])
    op.create_table(
        "router_operator_reports",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("endpoint", sa.String(256), nullable=False),
        sa.Column("backend", sa.String(32), nullable=True),
        sa.Column("models", sa.Text, nullable=True),
        sa.Column("signing_address", sa.String(42), nullable=True),
        sa.Column("attestation", sa.String(32), nullable=True),
        sa.Column("hardware", sa.Text, nullable=True),
        sa.Column("probe_ok", sa.Boolean, nullable=False),
        sa.Column("probe_latency_ms", sa.Float, nullable=True),
        sa.Column("probed_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "router_services",
        sa.Column("service_id", sa.BigInteger, primary_key=True),
        sa.Column("operator", sa.String(42), nullable=False),
        sa.Column("blueprint_id", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("price_in_per_m", sa.String(78), nullable=False),
        sa.Column("price_out_per_m", sa.String(78), nullable=False),
        sa.Column("max_context", sa.BigInteger, nullable=False),
        sa.Column("flags", sa.BigInteger, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_index("ix_router_services_operator", "router_services", ["operator"])
    op.create_index("ix_router_services_model", "router_services", ["model"])
    op.create_table(
        "router_api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "router_ledger",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("idem_key", sa.String(200), nullable=False, unique=True),
        sa.Column("tx_id", sa.String(196), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("account", sa.String(96), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_router_ledger_tx_id", "router_ledger", ["tx_id"])
    op.create_index("ix_router_ledger_account", "router_ledger", ["account"])
    op.create_index("ix_router_ledger_request_id", "router_ledger", ["request_id"])
    op.create_table(
        "router_balances",
        sa.Column("account", sa.String(96), primary_key=True),
        sa.Column("balance", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "router_requests",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("payer", sa.String(64), nullable=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(16), nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("upstream_kind", sa.String(16), nullable=True),
        sa.Column("upstream", sa.String(96), nullable=True),
        sa.Column("upstream_name", sa.String(64), nullable=True),
        sa.Column("service_id", sa.BigInteger, nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("receipt_id", sa.String(128), nullable=True),
        sa.Column("receipt_signer", sa.String(42), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_router_requests_key_time", "router_requests", ["key_id", "created_at"])
    op.create_index("ix_router_requests_payer_time", "router_requests", ["payer", "created_at"])
    op.create_index("ix_router_requests_time", "router_requests", ["created_at"])


def downgrade() -> None:
    for table in (
        "router_requests", "router_balances", "router_ledger", "router_api_keys",
        "router_services", "router_operator_reports", "router_chain_operators",
        "router_blueprints", "router_sync_state",
    ):  # fmt: skip
        op.drop_table(table)
