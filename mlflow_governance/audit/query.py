"""Reading the audit log: filtered listing, verification, checkpoints and stage history."""

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
from mlflow_governance.audit.writer import DECISION_DENY
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
        c.time >= _naive_utc(flt.since) if flt.since is not None else None,
        c.time <= _naive_utc(flt.until) if flt.until is not None else None,
    ]
    for condition in conditions:
        if condition is not None:
            query = query.where(condition)
    query = query.order_by(c.id.desc() if flt.newest_first else c.id)
    if flt.limit is not None:
        query = query.limit(flt.limit)
    return [row_to_dict(dict(row._mapping)) for row in connection.execute(query)]


def _naive_utc(value: datetime) -> datetime:
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


@dataclass(frozen=True)
class HistoryEvent:
    """A version entering or leaving a stage or alias."""

    time: str
    actor: str
    action: str
    version: int | None
    kind: str  # "stage" or "alias"
    name: str  # the stage or alias
    before: str | None
    after: str | None
    audit_id: int
    request_id: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def _lineage(
    connection: sa.Connection, model: str, workspace: str | None = None
) -> list[tuple[str, int, int | None]]:
    """The names a model had, with the audit id ranges in which it had them.

    Rename rows keep the old name (the new one is in ``details.new_name``), so history
    follows them backwards; a name vacated by a rename before belongs to another model.

    Returns:
        ``(name, after_id, before_id)`` triples: rows of ``name`` with
        ``after_id < id < before_id`` (``None``: no upper bound).
    """
    c = audit_log.c
    renames = []
    for row in connection.execute(
        sa.select(c.id, c.model, c.details)
        .where(
            c.action == "rename_registered_model",
            c.decision != DECISION_DENY,
            *([c.workspace == workspace] if workspace is not None else []),
        )
        .order_by(c.id)
    ):
        new_name = json.loads(row.details or "{}").get("new_name")
        if new_name:
            renames.append((int(row.id), row.model, new_name))
    segments: list[tuple[str, int, int | None]] = []
    # ``horizon``: only renames before the one just followed count. It falls with every
    # step, so the walk ends whatever the renames were (a model renamed to its own name,
    # or back and forth between two names).
    name, upper, horizon = model, None, None
    while True:
        earlier = [r for r in renames if (horizon is None or r[0] < horizon) and r[1] != r[2]]
        into = max((r for r in earlier if r[2] == name), default=None)
        vacated = max((r[0] for r in earlier if r[1] == name), default=0)
        lower = max(into[0] if into else 0, vacated)
        segments.append((name, lower, upper))
        if into is None or vacated > into[0]:
            return segments
        name, upper, horizon = into[1], into[0] + 1, into[0]


def row_events(row: Any) -> list[HistoryEvent]:
    """The stage and alias events one audit row records: the one reading of those
    columns, shared by :func:`history` and :mod:`mlflow_governance.audit.reconcile`."""
    events: list[HistoryEvent] = []
    common = {
        "time": format_time(row.time),
        "actor": row.actor,
        "action": row.action,
        "audit_id": row.id,
        "request_id": row.request_id,
    }
    if row.stage_after is not None:
        events.append(
            HistoryEvent(
                version=row.version,
                kind="stage",
                name=row.stage_after,
                before=row.stage_before,
                after=row.stage_after,
                **common,
            )
        )
    if row.alias is not None and (row.alias_before is not None or row.alias_after is not None):
        events.append(
            HistoryEvent(
                version=row.alias_after if row.alias_after is not None else row.alias_before,
                kind="alias",
                name=row.alias,
                before=None if row.alias_before is None else str(row.alias_before),
                after=None if row.alias_after is None else str(row.alias_after),
                **common,
            )
        )
    return events


def history(
    connection: sa.Connection,
    model: str,
    at: datetime | None = None,
    *,
    workspace: str | None = None,
) -> list[HistoryEvent]:
    """Every stage and alias change of a model, from the audit log, oldest first.

    Follows renames: the history of ``fraud-v2`` includes what happened while it was
    called ``fraud``.

    Args:
        connection: An open connection.
        model: The registered model name.
        at: Only changes up to this time.
        workspace: On workspace-aware servers, only changes in this workspace (a model
            of the same name in another workspace is another model).

    Returns:
        The events.
    """
    query = sa.select(audit_log).where(*_change_conditions(connection, model, at, workspace))
    events: list[HistoryEvent] = []
    for row in connection.execute(query.order_by(audit_log.c.id)):
        events.extend(row_events(row))
    return events


def _change_conditions(
    connection: sa.Connection, model: str, at: datetime | None, workspace: str | None
) -> list[Any]:
    """Which audit rows are stage or alias changes of ``model`` (under all its names)."""
    c = audit_log.c
    names = [
        sa.and_(c.model == name, c.id > lower, *([c.id < upper] if upper is not None else []))
        for name, lower, upper in _lineage(connection, model, workspace)
    ]
    conditions = [
        sa.or_(*names),
        c.decision != DECISION_DENY,
        sa.or_(
            c.stage_after.is_not(None),
            c.alias.is_not(None) & (c.alias_before.is_not(None) | c.alias_after.is_not(None)),
        ),
    ]
    if at is not None:
        conditions.append(c.time <= _naive_utc(at))
    if workspace is not None:
        conditions.append(c.workspace == workspace)
    return conditions


def holding_keys(
    version: int | None,
    stage_after: str | None,
    alias: str | None,
    alias_before: int | None,
    alias_after: int | None,
) -> list[tuple[str, Any]]:
    """What the events :func:`row_events` reads from a row with these columns set or clear
    in :func:`holders_at`: ``("stage", version)`` and ``("alias", name)``."""
    keys: list[tuple[str, Any]] = []
    if stage_after is not None and version is not None:
        keys.append(("stage", version))
    if alias is not None and (alias_before is not None or alias_after is not None):
        keys.append(("alias", alias))
    return keys


#: Ids per ``IN`` list when the deciding rows are read in full.
_ID_CHUNK = 1000


def holders(
    connection: sa.Connection,
    model: str,
    at: datetime | None = None,
    *,
    workspace: str | None = None,
) -> list[Holding]:
    """Who held each stage and alias of a model at ``at``: ``holders_at(history(...))``,
    reading in full only the rows that decide the answer.

    A busy model has tens of thousands of changes spread over the whole log; replaying
    them all costs a table read per change. The last change of each version's stage and
    of each alias decides who holds what, so a first pass reads only the few columns that
    say which change is whose (an index holding them answers without the table), and the
    second reads those rows in full and replays them as :func:`holders_at` replays every
    change: the earlier changes it skips would all have been overwritten.

    Args:
        connection: An open connection.
        model: The registered model name (its history follows renames).
        at: The moment; None for now.
        workspace: As for :func:`history`.

    Returns:
        As :func:`holders_at`.
    """
    c = audit_log.c
    narrow = sa.select(c.id, c.version, c.stage_after, c.alias, c.alias_before, c.alias_after)
    conditions = _change_conditions(connection, model, at, workspace)
    # Per stage (by version) and alias (by name): the id of its last change, and whether
    # that change leaves a holder (rows that archive or delete need no second read).
    deciding: dict[tuple[str, Any], tuple[int, bool]] = {}
    for row_id, version, stage_after, alias, alias_before, alias_after in connection.execute(
        narrow.where(*conditions)
    ).all():
        for key in holding_keys(version, stage_after, alias, alias_before, alias_after):
            if row_id > deciding.get(key, (0, False))[0]:
                holds = stage_after in HELD_STAGES if key[0] == "stage" else alias_after is not None
                deciding[key] = (row_id, holds)
    held = {row_id for row_id, holds in deciding.values() if holds}
    # The columns row_events reads; the long ones (reason, details, hashes) stay behind.
    full = sa.select(*(c[name] for name in _EVENT_COLUMNS))
    events: list[HistoryEvent] = []
    ids = sorted(held)
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        for row in connection.execute(full.where(c.id.in_(chunk)).order_by(c.id)):
            events.extend(row_events(row))
    # A row read for one key may carry an older change of another: only the holding
    # its own deciding row set is the answer.
    return [
        holding
        for holding in holders_at(events)
        if deciding[
            ("stage", holding.version) if holding.kind == "stage" else ("alias", holding.name)
        ]
        == (holding.audit_id, True)
    ]


#: What :func:`row_events` reads of a row.
_EVENT_COLUMNS = (
    "id",
    "time",
    "actor",
    "action",
    "request_id",
    "version",
    "stage_before",
    "stage_after",
    "alias",
    "alias_before",
    "alias_after",
)


#: The stages a version is said to hold (None, Archived and deleted are not held).
HELD_STAGES = ("Staging", "Production")


@dataclass(frozen=True)
class Holding:
    """Who holds a stage or alias at a moment, and since when."""

    kind: str
    name: str
    version: int
    since: str
    actor: str
    audit_id: int
    request_id: int | None


def holders_at(events: list[HistoryEvent]) -> list[Holding]:
    """Replay events into the stage and alias holders at the end of the list.

    Args:
        events: History events, oldest first (as :func:`history` returns them).

    Returns:
        One entry per version in a stage other than None/Archived/deleted, and per alias.
    """
    stages: dict[int, Holding] = {}
    aliases: dict[str, Holding] = {}
    for ev in events:
        if ev.kind == "stage" and ev.version is not None:
            if ev.after in HELD_STAGES:
                stages[ev.version] = Holding(
                    "stage", ev.after, ev.version, ev.time, ev.actor, ev.audit_id, ev.request_id
                )
            else:
                stages.pop(ev.version, None)
        elif ev.kind == "alias":
            if ev.after is None:
                aliases.pop(ev.name, None)
            else:
                aliases[ev.name] = Holding(
                    "alias", ev.name, int(ev.after), ev.time, ev.actor, ev.audit_id, ev.request_id
                )
    ordered = sorted(stages.values(), key=lambda h: (h.name, h.version))
    return ordered + sorted(aliases.values(), key=lambda h: h.name)
