"""Reading the audit log: filtered listing, verification and checkpoints.

Stage and alias history is in :mod:`mlflow_governance.audit.history`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mlflow_governance.audit.anchor import current_anchor
from mlflow_governance.audit.chain import UnreadableRow, VerifyResult, format_time, verify_rows
from mlflow_governance.audit.tables import HEAD_ROW_ID, audit_head, audit_log
from mlflow_governance.clock import utc_now
from mlflow_governance.exceptions import InvalidRequest

#: Columns in the order listings and exports show them.
COLUMNS = tuple(column.name for column in audit_log.columns)

_VERIFY_BATCH = 5000


@dataclass(frozen=True)
class AuditFilter:
    """Which rows to list; every field is optional and they combine with AND."""

    model: str | None = None
    version: int | None = None
    actor: str | None = None
    action: str | None = None
    decision: str | None = None
    workspace: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    newest_first: bool = False


def row_to_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """An audit row as JSON-ready data (time as ISO-8601 UTC, details parsed)."""
    data = {name: row[name] for name in COLUMNS}
    data["time"] = format_time(row["time"])
    data["details"] = json.loads(row["details"]) if row["details"] else {}
    return data


def list_rows(connection: sa.Connection, flt: AuditFilter) -> list[dict[str, Any]]:
    """Audit rows matching a filter, oldest first unless asked otherwise.

    Args:
        connection: An open connection to the registry database.
        flt: The filter.

    Returns:
        Rows as dictionaries (see :func:`row_to_dict`).
    """
    query = sa.select(audit_log)
    c = audit_log.c
    conditions = [
        c.model == flt.model if flt.model is not None else None,
        c.version == flt.version if flt.version is not None else None,
        c.actor == flt.actor if flt.actor is not None else None,
        c.action == flt.action if flt.action is not None else None,
        c.decision == flt.decision if flt.decision is not None else None,
        c.workspace == flt.workspace if flt.workspace is not None else None,
        c.time >= naive_utc(flt.since) if flt.since is not None else None,
        c.time <= naive_utc(flt.until) if flt.until is not None else None,
    ]
    for condition in conditions:
        if condition is not None:
            query = query.where(condition)
    query = query.order_by(c.id.desc() if flt.newest_first else c.id)
    if flt.limit is not None:
        query = query.limit(flt.limit)
    return [row_to_dict(dict(row._mapping)) for row in connection.execute(query)]


def naive_utc(value: datetime) -> datetime:
    from datetime import timezone

    if value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def _iter_rows(connection: sa.Connection) -> Iterator[Mapping[str, Any]]:
    """Every audit row in id order, for verification.

    Raises:
        UnreadableRow: At a row edited into something its column types do not allow,
            after every row before it was yielded.
    """
    # Keyset pages keep memory flat on a long log without holding a server-side cursor.
    last = 0
    while True:
        page: Iterable[Sequence[Any]]
        try:
            page = connection.execute(
                sa.select(audit_log)
                .where(audit_log.c.id > last)
                .order_by(audit_log.c.id)
                .limit(_VERIFY_BATCH)
            ).all()
        except _READ_ERRORS as exc:
            if _connection_lost(exc):
                raise
            # Some row of the page cannot be converted: read it again row by row so the
            # rows before the bad one are still checked and the bad one is named.
            page = _rows_one_by_one(connection, last, exc)
        count = 0
        for values in page:
            # Every row of the log passes here, so the per-row work stays in C loops: one
            # isinstance pass over the plain values, and a dict zipped from them (building
            # it from a RowMapping costs twice as much).
            row = dict(zip(COLUMNS, values, strict=True))
            if not all(map(isinstance, values, _ACCEPTED_TYPES)):
                problem = _type_problem(row)
                if problem is not None:
                    raise UnreadableRow(int(row["id"]), problem)
            yield row
            last = int(row["id"])
            count += 1
        if not count:
            return


#: What a driver or SQLAlchemy raises for a stored value it cannot convert (a SQLite time
#: of "garbage", a PostgreSQL time of "infinity", text that is not UTF-8).
_READ_ERRORS = (sa.exc.DBAPIError, ValueError, ArithmeticError, TypeError)

#: ``(column, Python type, nullable)`` of every audit column, as the chain hashes it.
_COLUMN_TYPES = tuple((c.name, c.type.python_type, c.nullable) for c in audit_log.columns)

#: The types each column's value may have, in :data:`COLUMNS` order (None where nullable):
#: the fast check that :func:`_type_problem` explains when it fails.
_ACCEPTED_TYPES = tuple(
    (expected, type(None)) if nullable else expected for _, expected, nullable in _COLUMN_TYPES
)


def _connection_lost(exc: Exception) -> bool:
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated


def _type_problem(row: Mapping[str, Any]) -> str | None:
    """Why a row read from the database is not an audit row (e.g. MariaDB hands back a
    zero date as a string), or None."""
    for name, expected, nullable in _COLUMN_TYPES:
        value = row[name]
        if value is None:
            if not nullable:
                return f"its {name} is empty"
        elif not isinstance(value, expected):
            return f"its {name} could not be read as {expected.__name__}: {_clip(repr(value))}"
    return None


def _rows_one_by_one(
    connection: sa.Connection, after: int, page_error: Exception
) -> Iterator[Sequence[Any]]:
    """One page of rows read singly, raising :class:`UnreadableRow` at the bad one."""
    c = audit_log.c
    ids = connection.execute(
        sa.select(c.id).where(c.id > after).order_by(c.id).limit(_VERIFY_BATCH)
    ).scalars()
    for row_id in list(ids):
        try:
            row = connection.execute(sa.select(audit_log).where(c.id == row_id)).one()
        except _READ_ERRORS as exc:
            if _connection_lost(exc):
                raise
            raise UnreadableRow(row_id, _unreadable_columns(connection, row_id, exc)) from exc
        yield tuple(row)
    # Every row read singly: the page failed for a reason that was not in a row.
    raise page_error


def _unreadable_columns(connection: sa.Connection, row_id: int, error: Exception) -> str:
    """Which columns of one row cannot be read, and why (e.g. ``its time could not be
    read (Couldn't parse datetime string: 'garbage')``)."""
    failing: list[str] = []
    first: Exception | None = None
    for column in audit_log.columns:
        try:
            connection.execute(sa.select(column).where(audit_log.c.id == row_id)).one()
        except _READ_ERRORS as exc:
            if _connection_lost(exc):
                raise
            failing.append(column.name)
            first = first or exc
    if not failing:  # no single column fails: not this row's content after all
        raise error
    cause = first.orig if isinstance(first, sa.exc.DBAPIError) else first
    return f"its {', '.join(failing)} could not be read ({_clip(str(cause).splitlines()[0])})"


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Checkpoint:
    """The chain head at one moment, kept outside the database to detect truncation."""

    rows: int
    head_id: int
    head_hash: str
    time: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise for the checkpoint file."""
        data = {
            "rows": self.rows,
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "time": self.time,
            **self.extra,
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "checkpoint") -> Checkpoint:
        """Parse a checkpoint file.

        Raises:
            InvalidRequest: The file is not a checkpoint written by ``audit checkpoint``.
        """
        try:
            data = json.loads(text)
            return cls(
                int(data["rows"]),
                int(data["head_id"]),
                str(data["head_hash"]),
                str(data.get("time", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest(
                f"{source} is not an audit checkpoint (expected JSON with rows, head_id and "
                f"head_hash as written by 'mlflow-governance audit checkpoint'): {exc}"
            ) from exc


def verify(connection: sa.Connection, checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Verify the whole chain, against the head row and optionally a checkpoint.

    Args:
        connection: An open connection.
        checkpoint: A checkpoint written earlier; rows it covers must still be there
            unchanged.

    Returns:
        The first problem, or success with the row count.
    """
    # After a retention cut the chain starts at its anchor, not at the genesis hash.
    start = current_anchor(connection)
    result = verify_rows(_iter_rows(connection), first_id=start.first_id, prev_hash=start.last_hash)
    if not result.ok:
        return result
    head = connection.execute(
        sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ROW_ID)
    ).first()
    if head is None:
        return VerifyResult(
            False,
            result.rows,
            result.head_id,
            result.head_hash,
            result.head_id + 1,
            f"the chain head row (governance_audit_head) is missing; the log ends at row "
            f"{result.head_id} and its newest rows may have been cut off: compare with a "
            "checkpoint (audit verify --checkpoint FILE)",
        )
    if int(head.seq) != result.head_id or head.hash != result.head_hash:
        return VerifyResult(
            False,
            result.rows,
            result.head_id,
            result.head_hash,
            result.head_id + 1,
            f"the chain ends at row {result.head_id} but its head records row {head.seq}: "
            "the newest rows were deleted or the head was altered",
        )
    if checkpoint is not None:
        if result.head_id < checkpoint.head_id:
            return VerifyResult(
                False,
                result.rows,
                result.head_id,
                result.head_hash,
                result.head_id + 1,
                f"the log ends at row {result.head_id} but the checkpoint of {checkpoint.time} "
                f"covers {checkpoint.head_id} rows: rows {result.head_id + 1}.."
                f"{checkpoint.head_id} were cut off",
            )
        stored = connection.execute(
            sa.select(audit_log.c.hash).where(audit_log.c.id == checkpoint.head_id)
        ).scalar()
        if checkpoint.head_id == start.last_id:
            stored = start.last_hash
        elif checkpoint.head_id < start.last_id:
            # That row went to the archive: ``audit verify --archive`` checks it there.
            stored = checkpoint.head_hash
        if checkpoint.head_id and stored != checkpoint.head_hash:
            return VerifyResult(
                False,
                result.rows,
                result.head_id,
                result.head_hash,
                checkpoint.head_id,
                f"row {checkpoint.head_id}: its hash differs from the checkpoint of "
                f"{checkpoint.time}: the log was rewritten after the checkpoint",
            )
    return result


def make_checkpoint(connection: sa.Connection) -> tuple[Checkpoint, VerifyResult]:
    """Verify the chain and describe its head for a checkpoint file.

    Returns:
        The checkpoint and the verification it rests on (a broken chain gets no
        checkpoint: the caller must refuse to write one).
    """
    result = verify(connection)
    return Checkpoint(result.rows, result.head_id, result.head_hash, format_time(utc_now())), result
