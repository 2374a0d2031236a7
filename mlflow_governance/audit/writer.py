"""Append audit rows to the chain inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mlflow_governance.audit.chain import content_hash, link_hash, row_hash
from mlflow_governance.audit.event_catalog import events_of
from mlflow_governance.audit.outbox import enqueue
from mlflow_governance.audit.storable import storage_of
from mlflow_governance.audit.tables import EVENT_PENDING, HEAD_ROW_ID, audit_head, audit_log, outbox
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


#: Where :func:`take_head` leaves the chain head it locked and read, in the Session's
#: ``info``: ``(seq, hash, locked)``.
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


def append(executor: Executor, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """Chain and insert audit rows, and their events, in the executor's open transaction.

    The events the rows announce (SPEC section 8) go into ``governance_outbox`` in the
    same transaction: they commit with the change or not at all, and a dispatcher
    delivers them later, never in the write path.

    On PostgreSQL one row (the common case) costs one statement: it locks and moves the
    chain head, computes the row's link in SQL, inserts the row and its events.

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
    known = executor.info.pop(HEAD_TAKEN, None) if isinstance(executor, Session) else None
    dialect = connection.dialect.name
    if known is None and len(entries) == 1 and dialect == "postgresql":
        return [_append_one_in_sql(connection, entries[0], storage)]
    if known is None and len(entries) == 1 and dialect == "sqlite":
        rows = [_append_one_sqlite(connection, entries[0], storage)]
    else:
        rows = _append_rows(connection, entries, storage, known)
    enqueue(connection, rows, rows[0]["time"])
    return rows


def _append_rows(
    connection: sa.Connection,
    entries: Sequence[AuditEntry],
    storage: Any,
    known: tuple[int, str, bool] | None,
) -> list[dict[str, Any]]:
    """Chain rows in Python, after locking the head, and insert them.

    The head is locked before it is read (a row lock on PostgreSQL and MySQL, the write
    lock on SQLite), so concurrent writers queue here and each sees the head its
    predecessor committed. A head locked earlier in the transaction (:func:`take_head`)
    saves that round trip.
    """
    count = len(entries)
    if known is not None:  # locked and read by take_head in this transaction
        seq, prev_hash = known[0], known[1]
    elif connection.dialect.update_returning:  # PostgreSQL, SQLite >= 3.35
        head = connection.execute(_BUMP_HEAD_RETURNING, {"n_rows": 0}).first()
        seq, prev_hash = _head_or_raise(head)
    else:  # MariaDB/MySQL: UPDATE has no RETURNING; a locking read takes the row lock
        seq, prev_hash = _head_or_raise(connection.execute(_LOCK_HEAD).first())
    rows = _chain(entries, storage, int(seq) + 1, prev_hash)
    connection.execute(_INSERT_ROWS, rows if count > 1 else rows[0])
    if connection.dialect.name == "postgresql":
        # Elsewhere a trigger moves the head after each inserted row (migration 0007).
        connection.execute(_SET_HEAD, {"head_seq": int(seq) + count, "head_hash": rows[-1]["hash"]})
    return rows


def _head_or_raise(head: Any) -> tuple[int, str]:
    if head is None:
        raise AuditIntegrityError(
            "The audit chain head (table governance_audit_head) is missing, so no audit row "
            "can be chained and the change was not applied. Someone deleted it, perhaps with "
            "the newest audit rows: run 'mlflow-governance audit verify --checkpoint FILE' "
            "against your last checkpoint, then 'mlflow-governance db upgrade' to restore "
            "the head from the newest remaining row."
        )
    return int(head[0]), str(head[1])


def _append_one_sqlite(
    connection: sa.Connection, entry: AuditEntry, storage: Any
) -> dict[str, Any]:
    """One row in one SQLite statement: linked onto the head it reads, moved by a trigger.

    The transaction holds the database's write lock by then (the registry change came
    first, or this INSERT takes it), so nobody moves the head between read and insert.
    """
    _ensure_link_function(connection)
    row = _row_of(entry, storage, utc_now())
    return _linked_by_database(connection, _SQLITE_ONE_ROW, row, _row_params(row))


def _ensure_link_function(connection: sa.Connection) -> None:
    """Give this SQLite connection the link function, once per connection of the pool."""
    pooled = connection.connection
    if pooled.info.get(_SQLITE_LINK):
        return
    driver = pooled.dbapi_connection
    assert driver is not None
    driver.create_function(_SQLITE_LINK, 3, _sqlite_link, deterministic=True)
    pooled.info[_SQLITE_LINK] = True


def _sqlite_link(prev_hash: str, row_id: int, content: str) -> str:
    return link_hash(prev_hash, row_id, content)


def _append_one_in_sql(
    connection: sa.Connection, entry: AuditEntry, storage: Any
) -> dict[str, Any]:
    """One row and its events in one PostgreSQL statement; the database links the row."""
    row = _row_of(entry, storage, utc_now())
    params = _row_params(row)
    events = events_of({**row, "id": None})
    for index, (kind, data) in enumerate(events):
        data.pop("audit_id", None)  # the database prefixes it once the row has its id
        params[f"event_type_{index}"] = kind
        params[f"event_data_{index}"] = json.dumps(data, sort_keys=True, default=str)
    return _linked_by_database(connection, _one_row_statement(len(events)), row, params)


def _row_params(row: dict[str, Any]) -> dict[str, Any]:
    """The bind parameters of a row the database links: its columns and content hash."""
    params: dict[str, Any] = {f"row_{name}": row[name] for name in _VALUE_COLUMNS}
    params["content_hash"] = content_hash(row)
    return params


def _linked_by_database(
    connection: sa.Connection, statement: Any, row: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Run a one-row append and complete ``row`` with the id and hashes it was given."""
    written = connection.execute(statement, params).first()
    if written is None:  # no head row to link onto
        _head_or_raise(None)
    assert written is not None
    row.update(id=int(written.id), prev_hash=written.prev_hash, hash=written.hash)
    return row


def _chain(
    entries: Sequence[AuditEntry], storage: Any, first_id: int, prev_hash: str
) -> list[dict[str, Any]]:
    """The rows of ``entries``, numbered from ``first_id`` and chained after ``prev_hash``."""
    now = utc_now()
    rows: list[dict[str, Any]] = []
    for offset, entry in enumerate(entries):
        row = _row_of(entry, storage, now)
        row["id"], row["prev_hash"] = first_id + offset, prev_hash
        row["hash"] = prev_hash = row_hash(row)
        rows.append(row)
    return rows


def _row_of(entry: AuditEntry, storage: Any, now: Any) -> dict[str, Any]:
    """The stored columns of an entry, before it has a place in the chain."""
    ident = entry.identity
    row: dict[str, Any] = {
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
        "workspace": entry.workspace,
    }
    # Hostile input must not turn a refusal into a crash: whatever the database cannot
    # store as is gets a safe form, before hashing, so the chain covers what is stored.
    unstorable = storage.make_storable(row)
    if entry.details or unstorable:
        row["details"] = storage.details_text(entry.details, unstorable)
    return row


# The statements of every append, built once (their compiled forms are cached by the engine).
_BUMP_HEAD_RETURNING = (
    sa.update(audit_head)
    .where(audit_head.c.id == HEAD_ROW_ID)
    .values(seq=audit_head.c.seq + sa.bindparam("n_rows", type_=sa.BigInteger))
    .returning(audit_head.c.seq, audit_head.c.hash)
)
_LOCK_HEAD = (
    sa.select(audit_head.c.seq, audit_head.c.hash)
    .where(audit_head.c.id == HEAD_ROW_ID)
    .with_for_update()
)
_INSERT_ROWS = sa.insert(audit_log)
_SET_HEAD = (
    sa.update(audit_head)
    .where(audit_head.c.id == HEAD_ROW_ID)
    .values(
        seq=sa.bindparam("head_seq", type_=sa.BigInteger),
        hash=sa.bindparam("head_hash", type_=sa.String),
    )
)

#: The columns a writer fills; the database fills ``id``, ``prev_hash`` and ``hash``.
_VALUE_COLUMNS = tuple(c.name for c in audit_log.c if c.name not in ("id", "prev_hash", "hash"))


def _pg_cast(column: sa.Column[Any]) -> str:
    # Plain types: a cast to VARCHAR(n) would cut a value silently, where the column's
    # own length check refuses it.
    if isinstance(column.type, sa.DateTime):
        return "TIMESTAMP"
    if isinstance(column.type, sa.Integer):
        return "BIGINT"
    return "TEXT"


def _link_sql(prev: str, position: str, content: str) -> str:
    """SQL computing :func:`~mlflow_governance.audit.chain.link_hash` on PostgreSQL."""
    return (
        f"encode(sha256(convert_to({prev} || ':' || ({position})::text || ':' || {content}, "
        "'UTF8')), 'hex')"
    )


def _build_one_row_statement(n_events: int) -> sa.TextClause:
    values = ", ".join(
        f"CAST(:row_{name} AS {_pg_cast(audit_log.c[name])})" for name in _VALUE_COLUMNS
    )
    sql = f"""
WITH old AS (
    SELECT seq, hash FROM {audit_head.name} WHERE id = {HEAD_ROW_ID} FOR UPDATE
), head AS (
    UPDATE {audit_head.name} AS h
       SET seq = old.seq + 1,
           hash = {_link_sql("old.hash", "old.seq + 1", "CAST(:content_hash AS TEXT)")}
      FROM old
     WHERE h.id = {HEAD_ROW_ID}
    RETURNING h.seq, old.hash AS prev_hash, h.hash
), audit_row AS (
    INSERT INTO {audit_log.name} ({", ".join(_VALUE_COLUMNS)}, id, prev_hash, hash)
    SELECT {values}, head.seq, head.prev_hash, head.hash FROM head
    RETURNING id, prev_hash, hash
)"""
    if n_events:
        events = ", ".join(
            f"(CAST(:event_type_{i} AS TEXT), CAST(:event_data_{i} AS TEXT))"
            for i in range(n_events)
        )
        # The event id and the audit id in the data are those of the row just linked,
        # as audit/event_catalog.py derives them.
        sql += f""", events AS (
    INSERT INTO {outbox.name}
        (event_id, type, model, version, audit_id, time, data, state, attempts,
         next_attempt_at)
    SELECT substr(encode(sha256(convert_to(audit_row.hash || ':' || e.type, 'UTF8')), 'hex'),
                  1, 32),
           e.type, CAST(:row_model AS TEXT), CAST(:row_version AS BIGINT), audit_row.id,
           CAST(:row_time AS TIMESTAMP),
           '{{"audit_id":' || audit_row.id || ',' || substr(e.data, 2),
           '{EVENT_PENDING}', 0, CAST(:row_time AS TIMESTAMP)
      FROM audit_row, (VALUES {events}) AS e(type, data)
)"""
    sql += "\nSELECT id, prev_hash, hash FROM audit_row"
    return sa.text(sql)


_SQLITE_LINK = "governance_link"
_SQLITE_ONE_ROW = sa.text(
    f"INSERT INTO {audit_log.name} ({', '.join(_VALUE_COLUMNS)}, id, prev_hash, hash) "
    f"SELECT {', '.join(':row_' + name for name in _VALUE_COLUMNS)}, seq + 1, hash, "
    f"{_SQLITE_LINK}(hash, seq + 1, :content_hash) "
    f"FROM {audit_head.name} WHERE id = {HEAD_ROW_ID} "
    "RETURNING id, prev_hash, hash"
).bindparams(
    *(sa.bindparam(f"row_{name}", type_=audit_log.c[name].type) for name in _VALUE_COLUMNS)
)

#: One statement per number of events a row announces (at most two: a move that applies
#: a request is both transitioned and applied).
_ONE_ROW_STATEMENTS = {n: _build_one_row_statement(n) for n in range(3)}


def _one_row_statement(n_events: int) -> sa.TextClause:
    statement = _ONE_ROW_STATEMENTS.get(n_events)
    return statement if statement is not None else _build_one_row_statement(n_events)
