"""Pipeline schedules, and what started each pipeline run (``schedule:ID``, ``alert:ID``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_schedules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("pipeline", sa.String(64), nullable=False, index=True),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_runs", sa.Integer, nullable=True),
        sa.Column("max_concurrent", sa.Integer, nullable=True),
        sa.Column("catch_up", sa.Boolean, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True, index=True),
        sa.Column("runs_made", sa.Integer, nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.add_column(sa.Column("trigger", sa.String(64), nullable=True))
        batch.create_index("ix_pipeline_runs_trigger", ["trigger"])


def downgrade() -> None:
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.drop_index("ix_pipeline_runs_trigger")
        batch.drop_column("trigger")
    op.drop_table("pipeline_schedules")
