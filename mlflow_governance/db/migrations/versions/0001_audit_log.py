"""Audit log and its chain head.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_MICROS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "governance_audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("time", _MICROS, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("identity_source", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256)),
        sa.Column("version", sa.Integer),
        sa.Column("stage_before", sa.String(32)),
        sa.Column("stage_after", sa.String(32)),
        sa.Column("alias", sa.String(256)),
        sa.Column("alias_before", sa.Integer),
        sa.Column("alias_after", sa.Integer),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("rule", sa.String(256)),
        sa.Column("request_id", sa.BigInteger),
        sa.Column("details", sa.Text),
        sa.Column("client_address", sa.String(64)),
        sa.Column("user_agent", sa.String(512)),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index(
        "ix_governance_audit_model_version", "governance_audit_log", ["model", "version"]
    )
    op.create_index("ix_governance_audit_time", "governance_audit_log", ["time"])
    op.create_index("ix_governance_audit_actor", "governance_audit_log", ["actor"])
    op.create_index("ix_governance_audit_action", "governance_audit_log", ["action"])
    head = op.create_table(
        "governance_audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    # Seeded here so writers only ever update it: no insert race on the first audit row.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": _GENESIS}])


def downgrade() -> None:
    op.drop_table("governance_audit_head")
    op.drop_table("governance_audit_log")
