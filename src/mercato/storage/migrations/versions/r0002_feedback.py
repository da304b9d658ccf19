"""router: client feedback on answered requests

Revision ID: r0002
Revises: r0001
"""

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "router_feedback",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("upstream", sa.String(96), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_router_feedback_upstream", "router_feedback", ["upstream"])


def downgrade() -> None:
    op.drop_index("ix_router_feedback_upstream", "router_feedback")
    op.drop_table("router_feedback")
