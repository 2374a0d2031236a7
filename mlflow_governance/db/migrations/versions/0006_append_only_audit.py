"""The audit log becomes append-only: triggers refuse UPDATE and DELETE, and retention
records where the chain starts after a cut.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from mlflow_governance.db import append_only

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    # The DELETE trigger reads the anchor table: it must exist first.
    op.create_table(
        "governance_audit_anchor",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("first_id", sa.BigInteger, nullable=False),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("head_id", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("cut_before", _TIME, nullable=False),
        sa.Column("archive", sa.String(1024), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("archived_by", sa.String(256), nullable=False),
        sa.Column("archived_at", _TIME, nullable=False),
    )
    append_only.install(op.get_bind())


def downgrade() -> None:
    append_only.remove(op.get_bind())
    op.drop_table("governance_audit_anchor")
