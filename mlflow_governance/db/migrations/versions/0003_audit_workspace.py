"""Audit rows record the MLflow workspace of the change.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("governance_audit_log") as batch:
        # No index of its own: every index costs each governed write a page, and audit
        # queries within a workspace also name a model, which is indexed.
        batch.add_column(sa.Column("workspace", sa.String(63)))


def downgrade() -> None:
    with op.batch_alter_table("governance_audit_log") as batch:
        batch.drop_column("workspace")
