"""Every refusal, written once: audit the deny row, then hand back the error to raise.

The store (permissions, reads, reserved tags, gates) and the workflow (votes, policy
changes) refuse in the same two steps, and the order matters: the deny row is committed in
a transaction of its own first, so the refusal stays on record even though the caller's
own transaction (if any) is rolled back by the exception that follows.

The error is returned, not raised, so each caller's ``raise`` shows where control ends;
callers convert it to ``MlflowException`` themselves where MLflow's API is the edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from mlflow_governance.audit.writer import DECISION_DENY, AuditEntry, append
from mlflow_governance.exceptions import PermissionDenied
from mlflow_governance.identity import Identity


def refusal(
    engine: sa.Engine,
    identity: Identity,
    *,
    action: str,
    resource: str,
    reason: str,
    rule: str | None,
    hint: str | None = None,
    asked: str | None = None,
    model: str | None = None,
    version: int | None = None,
    alias: str | None = None,
    request_id: int | None = None,
    workspace: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> PermissionDenied:
    """Audit a refusal in a transaction of its own and build the error that reports it.

    Args:
        engine: The database the audit chain lives in.
        identity: Who was refused.
        action: The action the audit row records, e.g. ``transition_model_version_stage``.
        resource: What was refused, as the message names it, e.g. ``model 'm' version 3``.
        reason: Why, from the deciding rule.
        rule: The rule that decided, if any.
        hint: What would allow it (a role to ask for, a request to approve).
        asked: The action as the message words it, when that differs from ``action``
            (a permission such as ``audit:read``, or ``set tag 'k'``).
        model: The model concerned, for the audit row.
        version: The version concerned, for the audit row.
        alias: The alias concerned, for the audit row.
        request_id: The promotion request concerned (audit row and message).
        workspace: The MLflow workspace of the call, for the audit row.
        details: Anything else the audit row should keep.

    Returns:
        The ``PermissionDenied`` to raise; the caller raises it (or its MLflow form).
    """
    entry = AuditEntry(
        action=action,
        identity=identity,
        decision=DECISION_DENY,
        model=model,
        version=version,
        alias=alias,
        reason=reason,
        rule=rule,
        request_id=request_id,
        details=dict(details or {}),
        workspace=workspace,
    )
    with engine.begin() as connection:
        append(connection, [entry])
    return PermissionDenied(
        actor=identity.user,
        action=asked if asked is not None else action,
        resource=resource,
        reason=reason,
        rule=rule,
        hint=hint,
        request_id=request_id,
    )


__all__ = ["refusal"]
