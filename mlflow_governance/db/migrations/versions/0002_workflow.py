"""Promotion requests, approvals and applied policies.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_MICROS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "governance_requests",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("target_kind", sa.String(8), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("gate", sa.String(128)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requester", sa.String(256), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("archive_existing", sa.Boolean, nullable=False),
        sa.Column("created_at", _MICROS, nullable=False),
        sa.Column("updated_at", _MICROS, nullable=False),
        sa.Column("closed_by", sa.String(256)),
        sa.Column("closed_reason", sa.Text),
        sa.Column("applied_at", _MICROS),
        sa.Column("applied_by", sa.String(256)),
    )
    op.create_index("ix_governance_requests_model_state", "governance_requests", ["model", "state"])
    op.create_index("ix_governance_requests_state", "governance_requests", ["state"])
    op.create_table(
        "governance_approvals",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "request_id",
            sa.BigInteger,
            sa.ForeignKey("governance_requests.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("approver", sa.String(256), nullable=False),
        sa.Column("groups", sa.Text),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("time", _MICROS, nullable=False),
        sa.UniqueConstraint("request_id", "approver", name="uq_governance_approval_approver"),
    )
    op.create_table(
        "governance_policies",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(512)),
        sa.Column("applied_by", sa.String(256), nullable=False),
        sa.Column("applied_at", _MICROS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("governance_policies")
    op.drop_table("governance_approvals")
    op.drop_table("governance_requests")
