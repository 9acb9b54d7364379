"""Per-endpoint payload-log sampling rate.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(
            sa.Column("log_sample_rate", sa.Float, nullable=False, server_default="1.0")
        )


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("log_sample_rate")
