"""Append audit rows to the chain inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlflow_governance.audit.chain import row_hash
from mlflow_governance.audit.outbox import enqueue
from mlflow_governance.audit.storable import storage_of
from mlflow_governance.audit.tables import HEAD_ROW_ID, audit_head, audit_log
from mlflow_governance.clock import utc_now
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


#: Where :func:`take_head` and :func:`saw_head` leave the chain head they read, in the
#: Session's ``info``: ``(seq, hash, locked)``.
HEAD_TAKEN = "governance_head_taken"


def take_head(session: Session) -> None:
    """Lock the chain head now and remember it for this transaction's :func:`append`.

    On SQLite the governed store must hold the database's write lock before it decides
    anything, and the chain head is the page every governed write dirties anyway: taking
    it early both locks and reads it in one statement, and spares ``append`` the bump.

    Args:
        session: The write session, before anything else ran in its transaction.
    """
    head = session.connection().execute(_BUMP_HEAD_RETURNING, {"n_rows": 0}).first()
    if head is not None:
        session.info[HEAD_TAKEN] = (int(head[0]), str(head[1]), True)


def saw_head(session: Session, seq: int | None, head_hash: str | None) -> None:
    """Remember a chain head read (without its lock) earlier in the transaction.

    :func:`append` then tries to move the head from exactly that position in the same
    statement that inserts the row; when another writer moved it first, nothing is
    written by that try and ``append`` takes the head's lock as usual.

    Args:
        session: The write session.
        seq: The head's position as read, or None when the head is missing.
        head_hash: The head's hash as read.
    """
    if seq is not None and head_hash is not None:
        session.info[HEAD_TAKEN] = (int(seq), str(head_hash), False)


def append(executor: Executor, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """Chain and insert audit rows, and their events, in the executor's open transaction.

    The events the rows announce (SPEC section 8) go into ``governance_outbox`` in the
    same transaction: they commit with the change or not at all, and a dispatcher
    delivers them later, never in the write path.

    Args:
        executor: A Session or Connection inside the transaction of the change.
        entries: The rows to append, in order.

    Returns:
        The inserted rows as dictionaries (with ids and hashes).
    """
    rows = _append_rows(executor, entries)
    if rows:
        connection = executor.connection() if isinstance(executor, Session) else executor
        enqueue(connection, rows, rows[0]["time"])
    return rows


def _append_rows(executor: Executor, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """Chain and insert audit rows in the executor's open transaction.

    The head row is updated before it is read: the update takes a row lock on PostgreSQL
    and MySQL and the write lock on SQLite, so concurrent writers queue here and each
    sees the head its predecessor committed. A head read earlier in the transaction
    (:func:`take_head`, :func:`saw_head`) saves that round trip.

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
    storage = storage_of(connection)
    count = len(entries)
    known = executor.info.pop(HEAD_TAKEN, None) if isinstance(executor, Session) else None
    if known is not None and known[2]:  # locked and read by take_head in this transaction
        rows = _chain(entries, storage, int(known[0]) + 1, known[1])
        connection.execute(_INSERT_ROWS, rows)
        connection.execute(_SET_HEAD, {"head_seq": known[0] + count, "head_hash": rows[-1]["hash"]})
        return rows
    if known is not None and count == 1 and connection.dialect.name == "postgresql":
        # Optimistic: move the head from where it was seen, in the statement that inserts
        # the row. Another writer may have moved it since: then nothing was written.
        rows = _chain(entries, storage, int(known[0]) + 1, known[1])
        params = {f"row_{name}": value for name, value in rows[0].items()}
        moved = connection.execute(
            _INSERT_ROW_IF_HEAD_AT,
            {
                **params,
                "seen_seq": known[0],
                "head_seq": known[0] + 1,
                "head_hash": params["row_hash"],
            },
        )
        if moved.first() is not None:
            return rows
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
    rows = _chain(entries, storage, int(seq) - count + 1, prev_hash)
    if connection.dialect.name == "postgresql" and count == 1:
        # One round trip for the row and the new head: PostgreSQL runs an INSERT in a
        # WITH clause as part of the UPDATE statement.
        params = {f"row_{name}": value for name, value in rows[0].items()}
        connection.execute(_INSERT_ROW_SET_HEAD_HASH, {**params, "head_hash": rows[-1]["hash"]})
    else:
        connection.execute(_INSERT_ROWS, rows)
        connection.execute(_SET_HEAD_HASH, {"head_hash": rows[-1]["hash"]})
    return rows


def _chain(
    entries: Sequence[AuditEntry], storage: Any, first_id: int, prev_hash: str
) -> list[dict[str, Any]]:
    """The rows of ``entries``, numbered from ``first_id`` and chained after ``prev_hash``."""
    now = utc_now()
    rows: list[dict[str, Any]] = []
    for offset, entry in enumerate(entries):
        ident = entry.identity
        row: dict[str, Any] = {
            "id": first_id + offset,
            "time": now,
            "actor": ident.user,
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
            "rule": entry.rule,
            "request_id": entry.request_id,
            "details": None,
            "client_address": ident.client_address,
            "user_agent": ident.user_agent,
            "prev_hash": prev_hash,
            "workspace": entry.workspace,
        }
        # Hostile input must not turn a refusal into a crash: whatever the database cannot
        # store as is gets a safe form, before hashing, so the chain covers what is stored.
        unstorable = storage.make_storable(row)
        if entry.details or unstorable:
            row["details"] = storage.details_text(entry.details, unstorable)
        row["hash"] = prev_hash = row_hash(row)
        rows.append(row)
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
_SET_HEAD = (
    sa.update(audit_head)
    .where(audit_head.c.id == HEAD_ROW_ID)
    .values(
        seq=sa.bindparam("head_seq", type_=sa.BigInteger),
        hash=sa.bindparam("head_hash", type_=sa.String),
    )
)
_HEAD_MOVED = (
    sa.update(audit_head)
    .where(
        audit_head.c.id == HEAD_ROW_ID,
        audit_head.c.seq == sa.bindparam("seen_seq", type_=sa.BigInteger),
    )
    .values(
        seq=sa.bindparam("head_seq", type_=sa.BigInteger),
        hash=sa.bindparam("head_hash", type_=sa.String),
    )
    .returning(audit_head.c.id)
    .cte("head_moved")
)
_INSERT_ROW_IF_HEAD_AT = (
    sa.insert(audit_log)
    .from_select(
        [c.name for c in audit_log.c],
        sa.select(
            *(sa.bindparam(f"row_{c.name}", type_=c.type).label(c.name) for c in audit_log.c)
        ).select_from(_HEAD_MOVED),
    )
    .returning(audit_log.c.id)
)
_INSERT_ROW_SET_HEAD_HASH = _SET_HEAD_HASH.add_cte(
    sa.insert(audit_log)
    .values({c.name: sa.bindparam(f"row_{c.name}", type_=c.type) for c in audit_log.c})
    .cte("audit_row")
)
