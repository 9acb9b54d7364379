"""Lineage: which pipeline run and step made or changed a model version, endpoint or batch job.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lineage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_kind", sa.String(24), nullable=False),
        sa.Column("subject_id", sa.String(160), nullable=False),
        sa.Column(
            "run_id", sa.String(32), sa.ForeignKey("pipeline_runs.id"), nullable=False, index=True
        ),
        sa.Column("step", sa.String(140), nullable=False),
        sa.Column("relation", sa.String(24), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_lineage_subject", "subject_kind", "subject_id"),
    )


def downgrade() -> None:
    op.drop_table("lineage")
