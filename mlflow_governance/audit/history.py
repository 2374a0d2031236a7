"""Stage and alias history from the audit log: who held which stage or alias, and when."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mlflow_governance.audit.chain import format_time
from mlflow_governance.audit.query import naive_utc
from mlflow_governance.audit.tables import RENAME_ROWS, audit_log
from mlflow_governance.audit.writer import DECISION_DENY


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
            # A literal, not a parameter: the partial index of migration 0008 holds these
            # rows alone, and the planner uses it only for a predicate it can see.
            sa.text(RENAME_ROWS),
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
        conditions.append(c.time <= naive_utc(at))
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
