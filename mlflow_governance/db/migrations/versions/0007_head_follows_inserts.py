"""The chain head follows each inserted audit row, on SQLite and MySQL/MariaDB.

A trigger after every INSERT into ``governance_audit_log`` moves
``governance_audit_head`` to the new row, so a writer appends a row in one statement
instead of three (lock and read the head, insert, move the head). PostgreSQL needs no
trigger: its writers move the head in the statement that inserts the row.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TRIGGER = "governance_audit_head_follows"

_BODY = "UPDATE governance_audit_head SET seq = NEW.id, hash = NEW.hash WHERE id = 1"
_CREATE = {
    "sqlite": (f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON governance_audit_log BEGIN {_BODY}; END"),
    "mysql": (
        f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON governance_audit_log FOR EACH ROW {_BODY}"
    ),
}


def upgrade() -> None:
    bind = op.get_bind()
    statement = _CREATE.get(bind.dialect.name)
    if statement is not None:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name in _CREATE:
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
