"""Reconciliation: the registry's current state against what the audit log says it is.

The log is replayed, oldest row first, into the state it implies: which registered models
exist, which versions each has and in which stage, and which version each alias points
at, each remembered with the audit row that set it. That state is then compared with
MLflow's own tables (``registered_models``, ``model_versions``,
``registered_model_aliases``). A change made behind the plugin's back, directly in SQL,
has no row, so it shows up as a difference.

The stage and alias columns of a row are read by :func:`~mlflow_governance.audit.history.
row_events`, the same reading ``history`` uses. The log is read in keyset pages, so a
long log (a million rows) never sits in memory; the expected state is as large as the
registry itself. This module needs SQLAlchemy only: no MLflow, no Flask.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from mlflow_governance.audit.history import row_events
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.audit.writer import DECISION_DENY
from mlflow_governance.exceptions import Conflict
from mlflow_governance.method_permissions import WRITE_PERMISSIONS

#: MLflow's workspace for registries without workspaces (``DEFAULT_WORKSPACE_NAME``); the
#: audit row of such a registry leaves ``workspace`` empty.
DEFAULT_WORKSPACE = "default"
#: MLflow's stage of a soft-deleted version: the row stays, the version is gone.
DELETED = "Deleted_Internal"

#: Every kind of difference, and what it means.
KINDS: Mapping[str, str] = {
    "model_not_in_log": "a registered model exists that the log never created or touched",
    "model_missing": "the log says the model exists, the registry has no such model",
    "version_not_in_log": "a version exists that the log never created or touched",
    "version_missing": "the log says the version exists, the registry has no such version",
    "stage_differs": "the version's stage is not the one the log set last",
    "alias_not_in_log": "an alias exists that the log never set",
    "alias_missing": "the log says the alias exists, the registry has no such alias",
    "alias_differs": "the alias points at another version than the log set last",
}

_PAGE = 5000
_RENAME = "rename_registered_model"
_CREATE = "create_registered_model"
_DELETE = "delete_registered_model"
_UNATTRIBUTED = "unattributed_write"
#: Rows of these actions are registry writes on the model they name, so the model
#: existed then even when the log never saw it created (it predates the plugin).
_REGISTRY_WRITES = frozenset(WRITE_PERMISSIONS) | {_UNATTRIBUTED}

_registered_models = sa.table(
    "registered_models", sa.column("workspace", sa.String), sa.column("name", sa.String)
)
_model_versions = sa.table(
    "model_versions",
    sa.column("workspace", sa.String),
    sa.column("name", sa.String),
    sa.column("version", sa.Integer),
    sa.column("current_stage", sa.String),
)
_aliases = sa.table(
    "registered_model_aliases",
    sa.column("workspace", sa.String),
    sa.column("name", sa.String),
    sa.column("alias", sa.String),
    sa.column("version", sa.Integer),
)


@dataclass(frozen=True)
class Difference:
    """One way the registry differs from the log.

    Attributes:
        kind: One of :data:`KINDS`.
        workspace: The MLflow workspace (``default`` without workspaces).
        model: The registered model name.
        version: The version concerned (versions and stages), else None.
        alias: The alias concerned, else None.
        expected: What the log says: the stage, the alias's version, ``exists``, or
            None when the log knows nothing of the object.
        expected_row: The audit row that set ``expected`` (None with it).
        actual: What the registry holds: the stage, the alias's version, ``exists``
            (with the model's counts for a model not in the log), or None when absent.
    """

    kind: str
    workspace: str
    model: str
    version: int | None
    alias: str | None
    expected: Any
    expected_row: int | None
    actual: Any

    def key(self) -> tuple[Any, ...]:
        """What identifies the difference in a baseline (see :func:`accept`)."""
        return _key(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class _Model:
    """The state the log implies for one registered model."""

    origin: int  # the row that created it, renamed it to this name, or first wrote to it
    #: version -> (stage, row); stage None: the version exists, its stage is unknown
    #: (a version older than the log, touched by a row that did not move it).
    versions: dict[int, tuple[str | None, int]] = field(default_factory=dict)
    aliases: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Report:
    """The outcome of a reconciliation."""

    rows: int  # audit rows replayed (refusals are not replayed: they changed nothing)
    head_id: int  # the newest audit row read
    models: int  # registered models compared, from either side
    versions: int
    aliases: int
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        """Whether the registry is exactly what the log says."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, in the shape of ``audit reconcile --json``."""
        return {
            "ok": self.ok,
            "rows": self.rows,
            "head_id": self.head_id,
            "models": self.models,
            "versions": self.versions,
            "aliases": self.aliases,
            "differences": [d.to_dict() for d in self.differences],
        }


class _LogRow(NamedTuple):
    """The columns of an audit row the replay reads (a plain tuple: a million of them are
    read, and a tuple's fields are much cheaper to reach than a result row's)."""

    id: int
    time: datetime | None  # read only for rows that move a stage or an alias
    actor: str
    action: str
    model: str
    version: int | None
    stage_before: str | None
    stage_after: str | None
    alias: str | None
    alias_before: int | None
    alias_after: int | None
    request_id: int | None
    workspace: str | None
    details: str | None


def _log_rows(connection: sa.Connection, workspace: str | None) -> Iterator[_LogRow]:
    """Every audit row that may have changed the registry, in id order, page by page.

    Raises:
        Conflict: A page cannot be read (a row edited into something its
            column types do not allow).
    """
    c = audit_log.c
    changes = c.stage_after.is_not(None) | c.alias.is_not(None)
    columns = [
        c.id,
        # Only rows that move a stage or an alias need their time (for their events):
        # building a datetime for each of the others is a good part of the work.
        sa.case((changes, c.time), else_=None).label("time"),
        c.actor,
        c.action,
        c.model,
        c.version,
        c.stage_before,
        c.stage_after,
        c.alias,
        c.alias_before,
        c.alias_after,
        c.request_id,
        c.workspace,
        # Only a rename's details are needed: leave the others in the database.
        sa.case((c.action == _RENAME, c.details), else_=None).label("details"),
    ]
    conditions = [c.decision != DECISION_DENY, c.model.is_not(None)]
    if workspace is not None:
        conditions.append(c.workspace == workspace)
    last = 0
    while True:
        query = sa.select(*columns).where(c.id > last, *conditions).order_by(c.id).limit(_PAGE)
        try:
            page = connection.execute(query).all()
        except (sa.exc.DBAPIError, ValueError, ArithmeticError, TypeError) as exc:
            if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
                raise
            raise Conflict(
                f"The audit log cannot be read after row {last} ({type(exc).__name__}), so "
                "the registry cannot be reconciled with it. Run 'mlflow-governance audit "
                "verify' to find the damaged row."
            ) from exc
        if not page:
            return
        for row in page:
            yield _LogRow._make(row)
        last = int(page[-1].id)


class _Replay:
    """The expected state, built row by row."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], _Model] = {}
        self.rows = 0
        self.head_id = 0

    def apply(self, row: _LogRow) -> None:
        self.rows += 1
        self.head_id = row.id
        key = (row.workspace or DEFAULT_WORKSPACE, row.model)
        state = self.models.get(key)
        if row.version is None and row.alias is None:
            if row.action == _CREATE:
                self.models[key] = _Model(row.id)
                return
            if row.action == _DELETE:
                # Its versions and aliases go with it (their side-effect rows follow).
                self.models.pop(key, None)
                return
            if row.action == _RENAME:
                new_name = json.loads(row.details or "{}").get("new_name")
                if isinstance(new_name, str) and new_name != key[1]:
                    moved = self.models.pop(key, None) or _Model(row.id)
                    moved.origin = row.id
                    self.models[(key[0], new_name)] = moved
                return
        changed = row.stage_after is not None or (
            row.alias is not None and (row.alias_before is not None or row.alias_after is not None)
        )
        if not changed:
            # Most rows (tags, descriptions) change no stage or alias. A registry write
            # still says the model, and the version it names, existed then; any other
            # row (a workflow step) may be about a model deleted since.
            if row.action not in _REGISTRY_WRITES:
                return
            if state is None:
                state = self.models[key] = _Model(row.id)
            if row.version is not None:
                state.versions.setdefault(row.version, (None, row.id))
            return
        events = row_events(row)
        if state is None:
            if all(
                ev.after == DELETED if ev.kind == "stage" else ev.after is None for ev in events
            ):
                # A removal from a model the log no longer has (the versions and aliases a
                # model deletion took along) says nothing about the registry now.
                return
            state = self.models[key] = _Model(row.id)
        for ev in events:
            if ev.kind == "stage" and ev.version is not None:
                state.versions[int(ev.version)] = (ev.after, ev.audit_id)
            elif ev.kind == "alias":
                if ev.after is None:
                    state.aliases.pop(ev.name, None)
                else:
                    state.aliases[ev.name] = (int(ev.after), ev.audit_id)


def _registry(
    connection: sa.Connection, workspace: str | None
) -> tuple[
    set[tuple[str, str]],
    dict[tuple[str, str], dict[int, str]],
    dict[tuple[str, str], dict[str, int]],
]:
    """MLflow's models, versions (with stages) and aliases, keyed by (workspace, name)."""

    def scoped(table: Any) -> Any:
        query = sa.select(table)
        if workspace is not None:
            query = query.where(table.c.workspace == workspace)
        return query

    models = {(r.workspace, r.name) for r in connection.execute(scoped(_registered_models))}
    versions: dict[tuple[str, str], dict[int, str]] = {}
    for r in connection.execute(scoped(_model_versions)):
        versions.setdefault((r.workspace, r.name), {})[int(r.version)] = r.current_stage
    aliases: dict[tuple[str, str], dict[str, int]] = {}
    for r in connection.execute(scoped(_aliases)):
        aliases.setdefault((r.workspace, r.name), {})[r.alias] = int(r.version)
    return models, versions, aliases


def reconcile(connection: sa.Connection, workspace: str | None = None) -> Report:
    """Compare the registry with the state its audit log implies.

    Read both in one transaction with a snapshot (REPEATABLE READ on PostgreSQL and
    MySQL), or a write committed between the two reads shows up as a difference.

    Args:
        connection: An open connection to the registry database.
        workspace: Only this MLflow workspace (workspace-aware registries); None: all.

    Returns:
        Every difference, ordered by workspace, model, then version or alias.

    Raises:
        Conflict: The log cannot be read (HTTP 409).
    """
    replay = _Replay()
    for row in _log_rows(connection, workspace):
        replay.apply(row)
    models, versions, aliases = _registry(connection, workspace)
    diffs: list[Difference] = []
    for key in sorted(set(replay.models) | models | set(versions) | set(aliases)):
        diffs.extend(_compare_model(key, replay.models.get(key), key in models, versions, aliases))
    counted_versions = sum(len(v) for v in versions.values())
    counted_aliases = sum(len(a) for a in aliases.values())
    return Report(
        replay.rows,
        replay.head_id,
        len(set(replay.models) | models),
        counted_versions,
        counted_aliases,
        diffs,
    )


def _compare_model(
    key: tuple[str, str],
    expected: _Model | None,
    exists: bool,
    versions: Mapping[tuple[str, str], dict[int, str]],
    aliases: Mapping[tuple[str, str], dict[str, int]],
) -> list[Difference]:
    workspace, name = key
    actual_versions = versions.get(key, {})
    actual_aliases = aliases.get(key, {})

    def diff(
        kind: str,
        *,
        version: int | None = None,
        alias: str | None = None,
        expected: Any = None,
        row: int | None = None,
        actual: Any = None,
    ) -> Difference:
        return Difference(kind, workspace, name, version, alias, expected, row, actual)

    if expected is None:
        if not exists and not actual_versions and not actual_aliases:
            return []
        # One difference for the model: its versions and aliases are unknown to the log
        # by implication, and listing each would bury the model itself.
        live = sorted(v for v, stage in actual_versions.items() if stage != DELETED)
        return [
            diff(
                "model_not_in_log",
                actual={
                    "exists": exists,
                    "versions": live,
                    "aliases": dict(sorted(actual_aliases.items())),
                },
            )
        ]
    if not exists and not actual_versions and not actual_aliases:
        return [diff("model_missing", expected="exists", row=expected.origin)]
    out: list[Difference] = []
    if not exists:
        out.append(diff("model_missing", expected="exists", row=expected.origin))
    for number in sorted(set(expected.versions) | set(actual_versions)):
        want = expected.versions.get(number)
        have = actual_versions.get(number)
        if want is None:
            out.append(diff("version_not_in_log", version=number, actual=have))
        elif have is None:
            if want[0] != DELETED:  # a deleted version may be gone altogether
                out.append(
                    diff(
                        "version_missing", version=number, expected=want[0] or "exists", row=want[1]
                    )
                )
        elif want[0] is not None and want[0] != have:
            out.append(
                diff("stage_differs", version=number, expected=want[0], row=want[1], actual=have)
            )
        elif want[0] is None and have == DELETED:
            out.append(
                diff("stage_differs", version=number, expected="exists", row=want[1], actual=have)
            )
    for alias in sorted(set(expected.aliases) | set(actual_aliases)):
        held = expected.aliases.get(alias)
        points = actual_aliases.get(alias)
        if held is None:
            out.append(diff("alias_not_in_log", alias=alias, actual=points))
        elif points is None:
            out.append(diff("alias_missing", alias=alias, expected=held[0], row=held[1]))
        elif held[0] != points:
            out.append(
                diff("alias_differs", alias=alias, expected=held[0], row=held[1], actual=points)
            )
    return out


def _key(data: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        data.get("kind"),
        data.get("workspace"),
        data.get("model"),
        data.get("version"),
        data.get("alias"),
        json.dumps(data.get("actual"), sort_keys=True),
    )


def accept(report: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """Set aside the differences a reviewed earlier report (the baseline) already had.

    A registry older than the plugin has models and versions the log never saw. An
    operator reviews the first report, keeps it, and passes it as the baseline later:
    a difference with the same kind, workspace, model, version, alias and actual value is
    accepted; anything else (a new difference, or a known one that changed) still counts.

    Args:
        report: A report as :meth:`Report.to_dict` gives it (or the REST API sends it).
        baseline: An earlier such report.

    Returns:
        The report with ``differences`` holding only what the baseline does not have,
        ``accepted`` counting the rest, and ``ok`` recomputed.
    """
    known = {_key(d) for d in baseline.get("differences") or [] if isinstance(d, Mapping)}
    kept = [d for d in report.get("differences") or [] if _key(d) not in known]
    return {
        **report,
        "ok": not kept,
        "differences": kept,
        "accepted": len(report.get("differences") or []) - len(kept),
    }
