"""Append audit rows to the chain inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import sqlalchemy as sa

from mlflow_governance.audit.chain import row_hash
from mlflow_governance.audit.tables import HEAD_ROW_ID, audit_head, audit_log
from mlflow_governance.identity import Identity

DECISION_ALLOW = "allow"
DECISION_DENY = "deny"
DECISION_WOULD_DENY = "would-deny"


class Executor(Protocol):
    """Anything that runs a statement in the current transaction (Session or Connection)."""

    def execute(self, statement: Any, parameters: Any = None) -> Any: ...


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
    count = len(entries)
    executor.execute(
        sa.update(audit_head)
        .where(audit_head.c.id == HEAD_ROW_ID)
        .values(seq=audit_head.c.seq + count)
    )
    seq, prev_hash = executor.execute(
        sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ROW_ID)
    ).one()
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
        }
        row["hash"] = prev_hash = row_hash(row)
        rows.append(row)
    executor.execute(sa.insert(audit_log), rows)
    executor.execute(
        sa.update(audit_head).where(audit_head.c.id == HEAD_ROW_ID).values(hash=prev_hash)
    )
    return rows
