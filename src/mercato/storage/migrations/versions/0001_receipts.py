"""receipts

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = ("operator",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("response_sha256", sa.String(64), nullable=False),
        sa.Column("signing_address", sa.String(42), nullable=False),
        sa.Column("ecdsa_signature", sa.String(132), nullable=False),
        sa.Column("ed25519_public_key", sa.String(64), nullable=False),
        sa.Column("ed25519_signature", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("extra", sa.Text, nullable=True),
    )
    op.create_index("ix_receipts_created_at", "receipts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_receipts_created_at", "receipts")
    op.drop_table("receipts")
