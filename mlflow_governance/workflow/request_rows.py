"""Promotion requests and approvals as rows: reading, locking and state changes.

Everything here runs on a connection inside the caller's transaction; the service layer
(:mod:`mlflow_governance.workflow.promotion`) decides what to do and audits it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mlflow_governance.audit.chain import format_time
from mlflow_governance.exceptions import Conflict, InvalidRequest, NotFound
from mlflow_governance.workflow.tables import OPEN_STATES, STATES, approvals, requests

if TYPE_CHECKING:
    # Type-only: the locked state is built by the store's write path; reading it at run
    # time would pull MLflow's ORM models into every CLI start.
    from mlflow_governance.state import LockedModel, VersionState

STAGE = "stage"
ALIAS = "alias"


@dataclass(frozen=True)
class Target:
    """Where a request moves a version: a stage (``Production``) or an alias (``@champion``)."""

    kind: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse ``Production`` or ``@champion``.

        Raises:
            InvalidRequest: Not a stage name nor ``@alias``.
        """
        from mlflow_governance.policy import canonical_stage

        value = text.strip()
        if value.startswith("@"):
            if len(value) < 2:
                raise InvalidRequest("An alias target needs a name after '@', e.g. @champion.")
            return cls(ALIAS, value[1:])
        stage = canonical_stage(value)
        if stage is None:
            raise InvalidRequest(
                f"'{text}' is neither a stage nor an alias: use one of None, Staging, "
                "Production, Archived, or @ALIAS (e.g. @champion)."
            )
        return cls(STAGE, stage)

    def __str__(self) -> str:
        return f"@{self.name}" if self.kind == ALIAS else self.name


@dataclass(frozen=True)
class VersionIdentity:
    """What makes a model version the one a request was filed for.

    A name and a number are not enough: a model deleted (or renamed away) and made again
    under the same name numbers its versions from 1 again, and two workspaces may hold
    models of one name. MLflow keeps the creation time (ms) of the registered model and
    of the version; with the workspace they tell such versions apart.
    """

    workspace: str | None
    model_created: int | None
    version_created: int | None

    @classmethod
    def of(cls, locked: LockedModel, version: VersionState) -> VersionIdentity:
        """The identity a request for ``version`` of the locked model is bound to."""
        return cls(locked.workspace, locked.created, version.created)

    def matches(self, other: VersionIdentity) -> bool:
        """Whether both name the same version (an unknown part never matches)."""
        return self.model_created is not None and self.version_created is not None and self == other


@dataclass(frozen=True)
class ApprovalView:
    """One approver's voice on a request."""

    approver: str
    decision: str
    comment: str | None
    time: str
    groups: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "approver": self.approver,
            "decision": self.decision,
            "comment": self.comment,
            "time": self.time,
        }


@dataclass(frozen=True)
class RequestView:
    """A promotion request as users see it (CLI ``--json`` and REST use :meth:`to_dict`)."""

    id: int
    kind: str
    model: str
    version: int
    target: Target
    gate: str | None
    state: str
    requester: str
    comment: str | None
    archive_existing: bool
    created_at: str
    updated_at: str
    closed_by: str | None
    closed_reason: str | None
    applied_at: str | None
    applied_by: str | None
    approvals: tuple[ApprovalView, ...] = ()
    identity: VersionIdentity = VersionIdentity(None, None, None)
    #: Filled in by the service: what the gate still needs, for people.
    needs: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with the SPEC fields first."""
        data: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "target": str(self.target),
            "state": self.state,
            "requester": self.requester,
            "approvals": [a.to_dict() for a in self.approvals if a.decision == "approve"],
            "rejections": [a.to_dict() for a in self.approvals if a.decision == "reject"],
            "kind": self.kind,
            "gate": self.gate,
            "comment": self.comment,
            "archive_existing": self.archive_existing,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "closed_by": self.closed_by,
            "closed_reason": self.closed_reason,
            "applied_at": self.applied_at,
            "applied_by": self.applied_by,
            "needs": self.needs,
            "workspace": self.identity.workspace,
        }
        data.update(self.extra)
        return data


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _view(row: Any, votes: Sequence[Any]) -> RequestView:
    return RequestView(
        id=int(row.id),
        kind=row.kind,
        model=row.model,
        version=int(row.version),
        target=Target(row.target_kind, row.target),
        gate=row.gate,
        state=row.state,
        requester=row.requester,
        comment=row.comment,
        archive_existing=bool(row.archive_existing),
        created_at=format_time(row.created_at),
        updated_at=format_time(row.updated_at),
        closed_by=row.closed_by,
        closed_reason=row.closed_reason,
        applied_at=_time(row.applied_at),
        applied_by=row.applied_by,
        approvals=tuple(
            ApprovalView(
                v.approver,
                v.decision,
                v.comment,
                format_time(v.time),
                tuple(json.loads(v.groups or "[]")),
            )
            for v in votes
        ),
        identity=VersionIdentity(row.workspace, row.model_created, row.version_created),
    )


def load(conn: sa.Connection, request_id: int) -> RequestView:
    """Read one request with its approvals.

    Raises:
        NotFound: No such request.
    """
    row = conn.execute(sa.select(requests).where(requests.c.id == request_id)).first()
    if row is None:
        raise NotFound(
            f"Promotion request #{request_id} does not exist; list requests with "
            "'mlflow-governance requests'."
        )
    votes = conn.execute(
        sa.select(approvals).where(approvals.c.request_id == request_id).order_by(approvals.c.id)
    ).all()
    return _view(row, votes)


def search(
    conn: sa.Connection,
    *,
    state: str | None = None,
    model: str | None = None,
    version: int | None = None,
    target: Target | None = None,
    states: Sequence[str] | None = None,
    kind: str | None = None,
    identity: VersionIdentity | None = None,
    workspace: str | None = None,
    any_workspace: bool = True,
    limit: int = 1000,
) -> list[RequestView]:
    """Requests matching the filters, newest first, with their approvals.

    Args:
        identity: Only requests filed for exactly this version (workspace and creation
            times); the name and number filters still apply.
        workspace: With ``any_workspace=False``, only requests of this workspace (None:
            requests made without workspaces).
    """
    if state is not None and state not in STATES:
        raise InvalidRequest(f"Unknown request state '{state}' (valid: {', '.join(STATES)}).")
    c = requests.c
    query = sa.select(requests)
    if state is not None:
        query = query.where(c.state == state)
    if states is not None:
        query = query.where(c.state.in_(list(states)))
    if model is not None:
        query = query.where(c.model == model)
    if version is not None:
        query = query.where(c.version == version)
    if target is not None:
        query = query.where(c.target_kind == target.kind, c.target == target.name)
    if kind is not None:
        query = query.where(c.kind == kind)
    if identity is not None:
        query = query.where(
            _same(c.workspace, identity.workspace),
            c.model_created == identity.model_created,
            c.version_created == identity.version_created,
        )
    elif not any_workspace:
        query = query.where(_same(c.workspace, workspace))
    rows = conn.execute(query.order_by(c.id.desc()).limit(limit)).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    votes: dict[int, list[Any]] = {i: [] for i in ids}
    for vote in conn.execute(
        sa.select(approvals).where(approvals.c.request_id.in_(ids)).order_by(approvals.c.id)
    ):
        votes[vote.request_id].append(vote)
    return [_view(row, votes[row.id]) for row in rows]


def _same(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value


def insert(
    conn: sa.Connection,
    *,
    kind: str,
    model: str,
    version: int,
    target: Target,
    gate: str | None,
    state: str,
    requester: str,
    comment: str | None,
    archive_existing: bool,
    now: datetime,
    identity: VersionIdentity,
) -> int:
    """Insert a request and return its id."""
    result = conn.execute(
        sa.insert(requests).values(
            kind=kind,
            model=model,
            version=version,
            target_kind=target.kind,
            target=target.name,
            gate=gate,
            state=state,
            requester=requester,
            comment=comment,
            archive_existing=archive_existing,
            created_at=now,
            updated_at=now,
            workspace=identity.workspace,
            model_created=identity.model_created,
            version_created=identity.version_created,
        )
    )
    return _new_id(result)


def lock_open(conn: sa.Connection, request_id: int, now: datetime) -> None:
    """Take the request's row lock for the rest of the transaction.

    An update (rather than a SELECT ... FOR UPDATE) works the same on every backend: a row
    lock on PostgreSQL and MySQL, the write lock on SQLite. Concurrent approvers of one
    request therefore queue here, so the last approval is seen exactly once.

    Raises:
        NotFound: No such request.
        Conflict: The request is no longer open.
    """
    result = conn.execute(
        sa.update(requests)
        .where(requests.c.id == request_id, requests.c.state.in_(OPEN_STATES))
        .values(updated_at=now)
    )
    if result.rowcount == 1:
        return
    state = conn.execute(sa.select(requests.c.state).where(requests.c.id == request_id)).scalar()
    if state is None:
        load(conn, request_id)  # raises NotFound with the standard message
    raise Conflict(
        f"Promotion request #{request_id} is {state}; only open requests can change. "
        "To make its move now, open a new request (mlflow-governance request NAME VERSION "
        "--to TARGET)."
    )


def transition(
    conn: sa.Connection,
    request_id: int,
    *,
    from_states: Sequence[str],
    to_state: str,
    now: datetime,
    by: str | None = None,
    reason: str | None = None,
    applied: bool = False,
) -> bool:
    """Move a request between states if it is in one of ``from_states``.

    Returns:
        Whether the row changed (False when another transaction moved it first).
    """
    values: dict[str, Any] = {"state": to_state, "updated_at": now}
    if applied:
        values.update(applied_at=now, applied_by=by)
    else:
        values.update(closed_by=by, closed_reason=reason)
    result = conn.execute(
        sa.update(requests)
        .where(requests.c.id == request_id, requests.c.state.in_(list(from_states)))
        .values(**values)
    )
    return bool(result.rowcount == 1)


def add_vote(
    conn: sa.Connection,
    request_id: int,
    *,
    approver: str,
    groups: Sequence[str],
    decision: str,
    comment: str | None,
    now: datetime,
) -> None:
    """Record an approval or rejection.

    Raises:
        Conflict: The approver already voted on this request.
    """
    existing = conn.execute(
        sa.select(approvals.c.decision).where(
            approvals.c.request_id == request_id, approvals.c.approver == approver
        )
    ).scalar()
    if existing is not None:
        raise Conflict(
            f"{approver} already gave {'an approval' if existing == 'approve' else 'a rejection'} "
            f"on request #{request_id}; one voice per approver."
        )
    conn.execute(
        sa.insert(approvals).values(
            request_id=request_id,
            approver=approver,
            groups=json.dumps(sorted(groups)),
            decision=decision,
            comment=comment,
            time=now,
        )
    )


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has it
    return int(key[0])
