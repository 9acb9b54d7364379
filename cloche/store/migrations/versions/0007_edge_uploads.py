"""Chunks of edge servers' payload logs taken by the central server (exactly-once sync).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edge_uploads",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("segment", sa.String(200), primary_key=True),
        sa.Column("start_offset", sa.BigInteger, primary_key=True),
        sa.Column("end_offset", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False, index=True),
        sa.Column("staging", sa.String(64), nullable=False, unique=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("edge_uploads")
