"""Profiles: trained identities with their status, model and reservation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(36),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("tag", sa.String(128), nullable=True),
        sa.Column("training_tier", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("photo_count", sa.Integer(), nullable=False),
        sa.Column("photos", sa.JSON(), nullable=False),
        sa.Column("model", sa.JSON(), nullable=True),
        sa.Column(
            "reservation_id", sa.Integer(), sa.ForeignKey("ledger_entries.id"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('VALIDATING', 'QUEUING', 'IN_PROGRESS', 'READY', 'ERROR', 'INACTIVE')",
            name="ck_profiles_status",
        ),
        sa.CheckConstraint("training_tier IN ('standard', 'fast')", name="ck_profiles_tier"),
    )
    op.create_index("ix_profiles_account_id_tag", "profiles", ["account_id", "tag"])
    op.create_index("ix_profiles_status", "profiles", ["status"])


def downgrade() -> None:
    op.drop_table("profiles")
