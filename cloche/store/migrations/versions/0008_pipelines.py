"""Registered pipelines, their runs, the attempts of run steps, and approval decisions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("pipeline", sa.String(64), nullable=False, index=True),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("graph", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("state", sa.String(24), nullable=False, index=True),
        sa.Column("executor", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("pipeline_version", sa.Integer, nullable=True),
        sa.Column("runner", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "pipelines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("graph", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_pipeline_version"),
    )
    op.create_table(
        "pipeline_steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id", sa.String(32), sa.ForeignKey("pipeline_runs.id"), nullable=False, index=True
        ),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=True, index=True),
        sa.Column("cached_from", sa.String(32), nullable=True),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("log", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("run_id", "step", "iteration", "attempt", name="uq_pipeline_step"),
    )
    op.create_table(
        "pipeline_decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "run_id", sa.String(32), sa.ForeignKey("pipeline_runs.id"), nullable=False, index=True
        ),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "step", "iteration", name="uq_pipeline_decision"),
    )


def downgrade() -> None:
    op.drop_table("pipeline_decisions")
    op.drop_table("pipeline_steps")
    op.drop_table("pipelines")
    op.drop_table("pipeline_runs")
