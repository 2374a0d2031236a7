"""Work a gated move commits with itself: applying a request, opening a break-glass review.

The gate decides; these hooks run in the move's own transaction (the write session's
``before_commit``), so a request is marked applied, and a review opened, exactly when the
move commits, and not at all when it rolls back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlflow_governance.audit.writer import DECISION_ALLOW, AuditEntry
from mlflow_governance.clock import utc_now
from mlflow_governance.exceptions import Conflict
from mlflow_governance.policy import Gate
from mlflow_governance.workflow import request_rows as rq
from mlflow_governance.workflow.moves import Move
from mlflow_governance.workflow.tables import (
    APPLIED,
    APPROVED,
    KIND_REVIEW,
    OPEN_STATES,
    PENDING,
    SUPERSEDED,
)

if TYPE_CHECKING:
    from mlflow_governance.audit.capture import Operation
    from mlflow_governance.identity import Identity
    from mlflow_governance.state import LockedModel


def apply_through(op: Operation, request: rq.RequestView, gate: Gate, locked: LockedModel) -> None:
    """Let ``op`` apply an approved request: marked applied in the move's transaction.

    Every other open request for the same target is superseded with it, each with its
    audit row beside the move's own.
    """
    op.request_id = request.id
    op.rule = f"gates.{gate.name}"
    op.reason = f"applies approved request #{request.id}"
    op.details["approvers"] = [a.approver for a in request.approvals if a.decision == "approve"]
    workspace = locked.workspace

    def mark_applied(conn: Any) -> None:
        now = utc_now()
        if not rq.transition(
            conn,
            request.id,
            from_states=[APPROVED],
            to_state=APPLIED,
            now=now,
            by=op.identity.user,
            applied=True,
        ):
            raise Conflict(
                f"Request #{request.id} was applied or closed meanwhile; nothing was changed."
            )
        # The rows go with the move's own audit rows, in the same transaction.
        op.extra.extend(
            AuditEntry(
                "supersede_request",
                op.identity,
                DECISION_ALLOW,
                model=other.model,
                version=other.version,
                request_id=other.id,
                reason=f"superseded by request #{request.id}, applied",
                details={"superseded_by": request.id, "target": str(other.target)},
                workspace=workspace,
            )
            for other in _supersede_others(conn, request, now, op.identity.user, workspace)
        )

    op.hooks.append(mark_applied)


def break_glass(
    op: Operation,
    move: Move,
    gate: Gate,
    identity: Identity,
    bound: rq.VersionIdentity,
) -> None:
    """Let ``op`` be a break-glass move: its review request opens in the move's transaction."""
    op.rule = f"gates.{gate.name}.break_glass_roles"
    op.reason = "break-glass move; a post-hoc review request is opened"
    op.details["break_glass"] = True
    assert move.version is not None

    version = move.version

    def open_review(conn: Any) -> None:
        review_id = rq.insert(
            conn,
            kind=KIND_REVIEW,
            model=move.model,
            version=version,
            target=move.target,
            gate=gate.name,
            state=PENDING,
            requester=identity.user,
            comment="post-hoc review of a break-glass move",
            archive_existing=False,
            now=utc_now(),
            identity=bound,
        )
        op.request_id = review_id

    op.hooks.append(open_review)


def _supersede_others(
    conn: Any, request: rq.RequestView, now: Any, by: str, workspace: str | None
) -> list[rq.RequestView]:
    """Close every other open request for the same target; return those closed."""
    closed = []
    for other in rq.search(
        conn,
        model=request.model,
        target=request.target,
        states=OPEN_STATES,
        workspace=workspace,
        any_workspace=False,
    ):
        if (
            other.id != request.id
            and other.kind != KIND_REVIEW
            and rq.transition(
                conn,
                other.id,
                from_states=OPEN_STATES,
                to_state=SUPERSEDED,
                now=now,
                by=by,
                reason=f"superseded by request #{request.id}",
            )
        ):
            closed.append(other)
    return closed


__all__ = ["apply_through", "break_glass"]
