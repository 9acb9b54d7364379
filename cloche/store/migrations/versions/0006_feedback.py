"""Ground-truth labels ("feedback") for logged requests.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("endpoint", sa.String(64), nullable=False, index=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("label", sa.JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("endpoint", "request_id", name="uq_feedback_request"),
    )


def downgrade() -> None:
    op.drop_table("feedback")
