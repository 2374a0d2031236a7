"""Append audit rows to the chain inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlflow_governance.audit.chain import row_hash
from mlflow_governance.audit.tables import HEAD_ROW_ID, audit_head, audit_log
from mlflow_governance.exceptions import AuditIntegrityError
from mlflow_governance.identity import Identity

DECISION_ALLOW = "allow"
DECISION_DENY = "deny"
DECISION_WOULD_DENY = "would-deny"


#: What runs the audit statements: the change's Session, or a Connection in a transaction.
Executor = Session | sa.Connection


@dataclass
class AuditEntry:
    """One audit row before it is chained.

    Attributes mirror the columns of ``governance_audit_log``; ``details`` is any
    JSON-serialisable mapping.
    """

    action: str
    identity: Identity
    decision: str
    model: str | None = None
    version: int | None = None
    stage_before: str | None = None
    stage_after: str | None = None
    alias: str | None = None
    alias_before: int | None = None
    alias_after: int | None = None
    reason: str | None = None
    rule: str | None = None
    request_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    workspace: str | None = None


def utc_now() -> datetime:
    """Naive UTC now, the form every supported database returns unchanged."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _truncate(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[:limit]


def append(executor: Executor, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """Chain and insert audit rows in the executor's open transaction.

    The head row is updated before it is read: the update takes a row lock on PostgreSQL
    and MySQL and the write lock on SQLite, so concurrent writers queue here and each
    sees the head its predecessor committed.

    Args:
        executor: A Session or Connection inside the transaction of the change.
        entries: The rows to append, in order.

    Returns:
        The inserted rows as dictionaries (with ids and hashes).
    """
    if not entries:
        return []
    # Every governed write pays for these statements, so they go straight to the
    # transaction's connection (no ORM execution layer) and are built once, below.
    connection = executor.connection() if isinstance(executor, Session) else executor
    count = len(entries)
    if connection.dialect.update_returning:  # PostgreSQL, SQLite >= 3.35: one round trip
        head = connection.execute(_BUMP_HEAD_RETURNING, {"n_rows": count}).first()
    else:  # MariaDB/MySQL: UPDATE has no RETURNING; read the head under the lock just taken
        connection.execute(_BUMP_HEAD, {"n_rows": count})
        head = connection.execute(_READ_HEAD).first()
    if head is None:
        raise AuditIntegrityError(
            "The audit chain head (table governance_audit_head) is missing, so no audit row "
            "can be chained and the change was not applied. Someone deleted it, perhaps with "
            "the newest audit rows: run 'mlflow-governance audit verify --checkpoint FILE' "
            "against your last checkpoint, then 'mlflow-governance db upgrade' to restore "
            "the head from the newest remaining row."
        )
    seq, prev_hash = head
    now = utc_now()
    rows: list[dict[str, Any]] = []
    next_id = int(seq) - count + 1
    for offset, entry in enumerate(entries):
        ident = entry.identity
        row: dict[str, Any] = {
            "id": next_id + offset,
            "time": now,
            "actor": _truncate(ident.user, 256),
            "identity_source": ident.source,
            "action": entry.action,
            "model": entry.model,
            "version": entry.version,
            "stage_before": entry.stage_before,
            "stage_after": entry.stage_after,
            "alias": entry.alias,
            "alias_before": entry.alias_before,
            "alias_after": entry.alias_after,
            "decision": entry.decision,
            "reason": entry.reason,
            "rule": _truncate(entry.rule, 256),
            "request_id": entry.request_id,
            "details": json.dumps(entry.details, sort_keys=True, default=str)
            if entry.details
            else None,
            "client_address": _truncate(ident.client_address, 64),
            "user_agent": _truncate(ident.user_agent, 512),
            "prev_hash": prev_hash,
            "workspace": entry.workspace,
        }
        row["hash"] = prev_hash = row_hash(row)
        rows.append(row)
    if connection.dialect.name == "postgresql" and count == 1:
        # One round trip for the row and the new head: PostgreSQL runs an INSERT in a
        # WITH clause as part of the UPDATE statement.
        params = {f"row_{name}": value for name, value in rows[0].items()}
        connection.execute(_INSERT_ROW_SET_HEAD_HASH, {**params, "head_hash": prev_hash})
    else:
        connection.execute(_INSERT_ROWS, rows)
        connection.execute(_SET_HEAD_HASH, {"head_hash": prev_hash})
    return rows


# The statements of every append, built once (their compiled forms are cached by the engine).
_BUMP_HEAD = (
    sa.update(audit_head)
    .where(audit_head.c.id == HEAD_ROW_ID)
    .values(seq=audit_head.c.seq + sa.bindparam("n_rows", type_=sa.BigInteger))
)
_BUMP_HEAD_RETURNING = _BUMP_HEAD.returning(audit_head.c.seq, audit_head.c.hash)
_READ_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ROW_ID)
_INSERT_ROWS = sa.insert(audit_log)
_SET_HEAD_HASH = (
    sa.update(audit_head)
    .where(audit_head.c.id == HEAD_ROW_ID)
    .values(hash=sa.bindparam("head_hash", type_=sa.String))
)
_INSERT_ROW_SET_HEAD_HASH = _SET_HEAD_HASH.add_cte(
    sa.insert(audit_log)
    .values({c.name: sa.bindparam(f"row_{c.name}", type_=c.type) for c in audit_log.c})
    .cte("audit_row")
)
