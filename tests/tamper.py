"""Tampering with the audit log as a database administrator would, for tests.

The append-only triggers (migration 0006) refuse UPDATE and DELETE on
``governance_audit_log``. Tests that simulate someone who bypasses the plugin first get
rid of them the way a DBA can: ``ALTER TABLE ... DISABLE TRIGGER`` on PostgreSQL,
``DROP TRIGGER`` on MySQL/MariaDB and SQLite. The triggers come back afterwards, since the
server databases are reused by later tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from mlflow_governance.db import append_only


@contextmanager
def triggers_off(connection: sa.Connection) -> Iterator[sa.Connection]:
    """Run the body with the append-only triggers out of the way, on this connection.

    PostgreSQL disables them inside the caller's transaction (its DDL is transactional),
    so other sessions never see them gone; MySQL commits its DDL at once.

    Args:
        connection: A connection in a transaction (``engine.begin()``).
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.exec_driver_sql(f"ALTER TABLE {append_only.AUDIT_TABLE} DISABLE TRIGGER USER")
        yield connection
        connection.exec_driver_sql(f"ALTER TABLE {append_only.AUDIT_TABLE} ENABLE TRIGGER USER")
        return
    for name in (append_only.UPDATE_TRIGGER, append_only.DELETE_TRIGGER):
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    try:
        yield connection
    finally:
        # MySQL committed the DROP at once (SQLite too, outside a DML transaction): the
        # triggers must come back even when the body failed.
        for statement in append_only.install_statements(dialect):
            connection.execute(sa.text(statement))


def tamper(engine: sa.Engine, *statements: Any) -> None:
    """Execute statements (SQL text or SQLAlchemy statements) against the audit log in one
    transaction, with the append-only triggers out of the way.

    Args:
        engine: A plain engine on the registry database (not through the plugin).
        statements: What the DBA runs.
    """
    with engine.begin() as connection, triggers_off(connection):
        for statement in statements:
            connection.execute(sa.text(statement) if isinstance(statement, str) else statement)
