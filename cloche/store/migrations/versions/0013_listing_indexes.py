"""Indexes for the listings' sorts and filters (store/paging.py), so a console page at platform
scale (10,000 batch jobs or pipeline runs) reads an index range, not the whole table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# (index, table, columns): each serves a listing's default order, or a filter plus that order.
INDEXES = [
    ("ix_models_created_at", "models", ["created_at"]),
    ("ix_endpoints_created_at", "endpoints", ["created_at"]),
    ("ix_batch_jobs_state_created", "batch_jobs", ["state", "created_at"]),
    ("ix_pipeline_runs_created_at", "pipeline_runs", ["created_at"]),
    ("ix_pipeline_runs_state_created", "pipeline_runs", ["state", "created_at"]),
    ("ix_pipeline_runs_pipeline_created", "pipeline_runs", ["pipeline", "created_at"]),
    ("ix_alerts_opened_at", "alerts", ["opened_at"]),
    ("ix_alerts_state_opened", "alerts", ["state", "opened_at"]),
    ("ix_audit_log_actor_at", "audit_log", ["actor", "at"]),
    ("ix_audit_log_action_at", "audit_log", ["action", "at"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
