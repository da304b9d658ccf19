"""operator payments

Revision ID: p0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "p0001"
down_revision = None
branch_labels = ("payments",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pay_spend_authorizations",
        sa.Column("payer", sa.String(42), primary_key=True),
        sa.Column("nonce", sa.String(78), primary_key=True),
        sa.Column("max_amount", sa.String(40), nullable=False),
        sa.Column("deadline", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.String(132), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_pay_spend_status", "pay_spend_authorizations", ["status", "deadline"])
    op.create_table(
        "pay_channels",
        sa.Column("channel_id", sa.String(66), primary_key=True),
        sa.Column("payer", sa.String(42), nullable=False),
        sa.Column("best_cumulative", sa.BigInteger, nullable=False),
        sa.Column("best_signature", sa.String(132), nullable=True),
        sa.Column("consumed", sa.BigInteger, nullable=False),
        sa.Column("settled", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "pay_channel_charges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel_id", sa.String(66), nullable=False, index=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "pay_x402",
        sa.Column("payer", sa.String(42), primary_key=True),
        sa.Column("nonce", sa.String(66), primary_key=True),
        sa.Column("pay_to", sa.String(42), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("valid_after", sa.BigInteger, nullable=False),
        sa.Column("valid_before", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.String(132), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pay_x402")
    op.drop_table("pay_channel_charges")
    op.drop_table("pay_channels")
    op.drop_index("ix_pay_spend_status", "pay_spend_authorizations")
    op.drop_table("pay_spend_authorizations")
