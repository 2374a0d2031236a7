"""The transactional outbox: governance events written in the transaction of their change.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "governance_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256)),
        sa.Column("version", sa.Integer),
        sa.Column("audit_id", sa.BigInteger),
        sa.Column("time", _TIME, nullable=False),
        sa.Column(
            "data", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False
        ),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", _TIME),
        sa.Column("delivered_to", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", _TIME),
    )
    op.create_index("ix_governance_outbox_due", "governance_outbox", ["state", "next_attempt_at"])
    op.create_index("ix_governance_outbox_model", "governance_outbox", ["model", "id"])


def downgrade() -> None:
    op.drop_table("governance_outbox")
