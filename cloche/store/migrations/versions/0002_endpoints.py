"""Endpoints, deployments and the serving generation counter.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "endpoint_id",
            sa.Integer,
            sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("traffic", sa.Integer, nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("max_batch_size", sa.Integer, nullable=False),
        sa.Column("timeout_ms", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.UniqueConstraint("endpoint_id", "version_id", name="uq_deployment_version"),
    )
    op.create_index("ix_deployments_endpoint_id", "deployments", ["endpoint_id"])
    op.create_index("ix_deployments_version_id", "deployments", ["version_id"])
    op.create_table(
        "serving_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO serving_state (id, generation) VALUES (1, 0)")


def downgrade() -> None:
    for table in ("serving_state", "deployments", "endpoints"):
        op.drop_table(table)
