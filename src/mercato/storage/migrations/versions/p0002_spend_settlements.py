"""operator payments: spend settlements

Revision ID: p0002
Revises: p0001
"""

import sqlalchemy as sa
from alembic import op

revision = "p0002"
down_revision = "p0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pay_spend_settlements",
        sa.Column("payer", sa.String(42), primary_key=True),
        sa.Column("word", sa.String(78), primary_key=True),
        sa.Column("mask", sa.String(78), primary_key=True),
        sa.Column("total", sa.String(40), nullable=False),
        sa.Column("deadline", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.String(132), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_pay_settlement_status", "pay_spend_settlements", ["status", "deadline"])


def downgrade() -> None:
    op.drop_index("ix_pay_settlement_status", "pay_spend_settlements")
    op.drop_table("pay_spend_settlements")
