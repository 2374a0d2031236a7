"""Moves hidden inside other writes: renames and deletions, governed as the moves they are.

Renaming a model carries its versions' stages and aliases to the new name; deleting a
version or a model takes them away. Each of those effects is a move into or out of a
target that a gate may guard, so each is decided like one, inside the write's own
transaction on the model's locked row (:class:`~mlflow_governance.state.LockedModel`).
Requests filed for a model or version that a deletion or rename takes away end with it,
so that no approval outlives what it approved.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mlflow_governance.audit.writer import DECISION_ALLOW, AuditEntry
from mlflow_governance.clock import utc_now
from mlflow_governance.policy import (
    Policy,
    Subject,
    authorize,
    gates_for,
    protected_by,
    tag_move_decision,
)
from mlflow_governance.workflow import request_rows as rq
from mlflow_governance.workflow.moves import Verdict
from mlflow_governance.workflow.tables import (
    CANCELLED,
    KIND_REVIEW,
    OPEN_STATES,
    requests,
)

if TYPE_CHECKING:
    from mlflow_governance.identity import Identity
    from mlflow_governance.state import LockedModel, VersionState


def rename_verdict(
    policy: Policy, subject: Subject, locked: LockedModel, new_name: str
) -> Verdict | None:
    """Decide a rename: rights on both names, and every carried stage and alias.

    A stage or alias carried to the new name must already stand behind every gate that
    guards it there (the same gates guarded it under the old name); otherwise the rename
    would walk the version past a gate. A stage or alias gated under the old name but
    not under the new one is left, which needs the right to leave it.

    Args:
        policy: The policy in force.
        subject: The actor.
        locked: The model, locked, under its old name.
        new_name: The name asked for.

    Returns:
        None when allowed, else why not.
    """
    old = locked.name
    edit = authorize(policy, subject, "edit", new_name)
    if not edit.granted:
        return Verdict(
            edit.rule,
            f"renaming '{old}' to '{new_name}' needs 'edit' on the new name as well "
            f"({edit.reason})",
            edit.hint,
            action="edit",
        )
    for version in locked.versions:
        verdict = _carried(
            policy,
            subject,
            old,
            new_name,
            f"version {version.number} stands in {version.stage}",
            f"transition:{version.stage}",
            _stage_gates(policy, old, version.stage),
            _stage_gates(policy, new_name, version.stage),
        )
        if verdict is not None:
            return verdict
    for version in locked.versions:
        for key, _ in version.tags():
            trusted = tag_move_decision(policy, subject, old, new_name, key)
            if trusted is not None and not trusted.granted:
                return Verdict(
                    trusted.rule,
                    f"version {version.number} carries tag '{key}', which under "
                    f"'{new_name}' only trusted writers may set: {trusted.reason}",
                    trusted.hint,
                    action="edit",
                )
    for alias, number in sorted(locked.aliases.items()):
        verdict = _carried(
            policy,
            subject,
            old,
            new_name,
            f"alias @{alias} points at version {number}",
            f"alias:{alias}",
            {g.name for g in gates_for(policy, old, alias=alias)},
            {g.name for g in gates_for(policy, new_name, alias=alias)},
        )
        if verdict is not None:
            return verdict
    return None


def _stage_gates(policy: Policy, model: str, stage: str) -> set[str]:
    return {g.name for g in gates_for(policy, model, stage=stage)}


def _carried(
    policy: Policy,
    subject: Subject,
    old: str,
    new: str,
    what: str,
    permission: str,
    before: set[str],
    after: set[str],
) -> Verdict | None:
    entering = sorted(after - before)
    if entering:
        names = ", ".join(entering)
        return Verdict(
            f"gates.{entering[0]}",
            f"{what}; under '{new}' gate {names} guards it and under '{old}' it did not, so "
            "the rename would carry it past the gate",
            f"Move it out first (or remove the alias), rename, then promote it through gate "
            f"{entering[0]} under '{new}'.",
            action="edit",
        )
    if before - after:
        leave = authorize(policy, subject, permission, old)
        if not leave.granted:
            names = ", ".join(sorted(before - after))
            return Verdict(
                leave.rule,
                f"{what}, guarded under '{old}' by gate {names}; renaming to '{new}' takes it "
                f"out from behind the gate, which needs '{permission}' as moving it out does "
                f"({leave.reason})",
                leave.hint,
                action="edit",
            )
    return None


def delete_verdict(
    policy: Policy, subject: Subject, locked: LockedModel, version: int | None
) -> Verdict | None:
    """Decide deleting a version (or, with ``version=None``, the whole model).

    A deleted version leaves its stage and loses its aliases: protected ones
    (``protect_delete``) refuse the deletion outright; a gated stage needs the right to
    leave it, and every alias the right to move it.

    Args:
        policy: The policy in force.
        subject: The actor.
        locked: The model, locked.
        version: The version deleted; None for the model with all its versions.

    Returns:
        None when allowed, else why not.
    """
    if version is None:
        doomed: Iterable[VersionState] = locked.versions
    else:
        one = locked.version(version)
        doomed = [] if one is None else [one]
    for held in doomed:
        aliases = locked.aliases_of(held.number)
        entry = protected_by(policy, stage=held.stage, aliases=aliases)
        if entry is not None:
            return Verdict(
                "protect_delete",
                f"version {held.number} holds protected {entry} "
                f"(protect_delete: {', '.join(policy.protect_delete)})",
                "Move the version out of the protected stage or alias first.",
                action="delete",
            )
        if gates_for(policy, locked.name, stage=held.stage):
            leave = authorize(policy, subject, f"transition:{held.stage}", locked.name)
            if not leave.granted:
                return Verdict(
                    leave.rule,
                    f"version {held.number} stands in gated stage {held.stage}; deleting it "
                    f"takes it out, which needs 'transition:{held.stage}' as moving it out "
                    f"does ({leave.reason})",
                    leave.hint,
                    action="delete",
                )
        for alias in aliases:
            move = authorize(policy, subject, f"alias:{alias}", locked.name)
            if not move.granted:
                return Verdict(
                    move.rule,
                    f"version {held.number} holds alias @{alias}; deleting it removes the "
                    f"alias, which needs 'alias:{alias}' ({move.reason})",
                    move.hint,
                    action="delete",
                )
    return None


def end_requests(
    conn: sa.Connection,
    locked: LockedModel,
    *,
    version: int | None,
    why: str,
    by: Identity,
    now: datetime,
) -> list[AuditEntry]:
    """Cancel the open requests for a model (or one version) a write takes away.

    Reviews of break-glass moves are owed whatever happens to the model, so they stay.

    Returns:
        The audit rows of the cancelled requests, for the write's own transaction.
    """
    entries = []
    for view in rq.search(
        conn,
        model=locked.name,
        version=version,
        states=OPEN_STATES,
        workspace=locked.workspace,
        any_workspace=False,
    ):
        if view.kind == KIND_REVIEW or view.identity.model_created not in (None, locked.created):
            continue
        if rq.transition(
            conn,
            view.id,
            from_states=OPEN_STATES,
            to_state=CANCELLED,
            now=now,
            by=by.user,
            reason=why,
        ):
            entries.append(
                AuditEntry(
                    "cancel_request",
                    by,
                    DECISION_ALLOW,
                    model=view.model,
                    version=view.version,
                    request_id=view.id,
                    reason=f"request #{view.id} cancelled: {why}",
                    details={"target": str(view.target), "ended_by": why},
                    workspace=locked.workspace,
                )
            )
    return entries


def follow_rename(conn: sa.Connection, locked: LockedModel, new_name: str) -> None:
    """Let the open reviews of a renamed model follow it to its new name."""
    c = requests.c
    conn.execute(
        sa.update(requests)
        .where(
            c.model == locked.name,
            c.kind == KIND_REVIEW,
            c.state.in_(list(OPEN_STATES)),
            c.model_created == locked.created,
        )
        .values(model=new_name)
    )


def request_hook(locked: LockedModel, op: Any, *, version: int | None, why: str) -> Any:
    """A commit hook that ends the requests of what the write takes away."""

    def hook(conn: Any) -> None:
        op.extra.extend(
            end_requests(conn, locked, version=version, why=why, by=op.identity, now=utc_now())
        )

    return hook


__all__ = [
    "delete_verdict",
    "end_requests",
    "follow_rename",
    "rename_verdict",
    "request_hook",
]
