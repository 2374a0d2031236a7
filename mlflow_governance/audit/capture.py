"""Tie audit rows to the registry change's own transaction.

A governed call runs inside an :class:`Operation` held in a contextvar. The write session
factory of the governed store carries three listeners:

- ``before_flush`` stamps new model versions with the actor (MLflow never sets ``user_id``);
- ``after_flush`` records what the flush changed (stages, aliases, new versions) while the
  attribute history is still there, so the audit row says what really happened, including
  side effects such as versions archived by a transition;
- ``before_commit`` flushes, then chains the audit rows into the same transaction.

Attaching at commit time matters: ``create_model_version`` rolls back and retries on an
IntegrityError, and a rollback discards what was captured before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlRegisteredModelAlias,
)
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from mlflow_governance.audit.writer import HEAD_TAKEN, AuditEntry, append
from mlflow_governance.exceptions import AuditWriteError
from mlflow_governance.identity import Identity, current_identity
from mlflow_governance.transient import is_transient

WRITE_SESSION = "governance_write"
_CHANGES = "governance_changes"
_UNATTRIBUTED = "unattributed_write"
# Calls whose version is only known from the change they make.
_VERSION_CREATING = frozenset({"create_model_version", "copy_model_version"})


@dataclass
class Operation:
    """A governed call in progress: what the audit rows of its transaction will say."""

    action: str
    identity: Identity
    decision: str
    model: str | None = None
    version: int | None = None
    alias: str | None = None
    reason: str | None = None
    rule: str | None = None
    request_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: Rows the caller adds beside the change's own (e.g. a promotion request applied).
    extra: list[AuditEntry] = field(default_factory=list)
    #: The MLflow workspace of the call (workspace-aware stores only).
    workspace: str | None = None
    #: Set once its rows are committed with a write session.
    written: bool = False
    #: Work that must commit with the change (e.g. marking a request applied); each gets
    #: the transaction's connection and may raise to roll the change back.
    hooks: list[Callable[[Any], None]] = field(default_factory=list)
    #: The decision that depends on registry state, run by the write session as it
    #: opens, before MLflow reads anything: it locks what it reads and may raise to
    #: refuse, which rolls the whole transaction back.
    decide: Callable[[Session], None] | None = None
    #: Version tag keys the call writes, for the policy's trusted tag writers.
    tag_keys: tuple[str, ...] = ()


def snapshot(op: Operation) -> dict[str, Any]:
    """What :func:`restore` needs to put ``op`` back as it is now."""
    saved = dict(vars(op))
    saved["details"] = dict(op.details)
    saved["extra"] = list(op.extra)
    saved["hooks"] = list(op.hooks)
    return saved


def restore(op: Operation, saved: dict[str, Any]) -> None:
    """Put ``op`` back as :func:`snapshot` saw it, before a transaction runs again."""
    vars(op).update(saved)
    op.details, op.extra, op.hooks = dict(op.details), list(op.extra), list(op.hooks)


@dataclass(frozen=True)
class Change:
    """One registry state change seen in a flush."""

    model: str
    version: int | None = None
    stage_before: str | None = None
    stage_after: str | None = None
    alias: str | None = None
    alias_before: int | None = None
    alias_after: int | None = None


_operation: ContextVar[Operation | None] = ContextVar("mlflow_governance_operation", default=None)


def current() -> Operation | None:
    """The governed call in progress, if any."""
    return _operation.get()


@contextmanager
def running(op: Operation) -> Iterator[Operation]:
    """Make ``op`` the operation whose transaction the listeners audit."""
    token = _operation.set(op)
    try:
        yield op
    finally:
        _operation.reset(token)


def _history(obj: Any, attr: str) -> tuple[bool, Any, Any]:
    hist = sa.inspect(obj).attrs[attr].history
    if not hist.has_changes():
        return False, None, None
    before = hist.deleted[0] if hist.deleted else None
    after = hist.added[0] if hist.added else None
    return True, before, after


def _is(obj: object, cls: type) -> bool:
    # A plain bool (no narrowing): the ORM columns read below are values at run time,
    # which the type checker would otherwise see as Column objects.
    return isinstance(obj, cls)


def _changes_of_flush(session: Session) -> list[Change]:
    changes: list[Change] = []
    for obj in session.new:
        if _is(obj, SqlModelVersion):
            changes.append(Change(obj.name, obj.version, None, obj.current_stage))
        elif _is(obj, SqlRegisteredModelAlias):
            changes.append(Change(obj.name, obj.version, alias=obj.alias, alias_after=obj.version))
    for obj in session.dirty:
        if _is(obj, SqlModelVersion):
            changed, before, after = _history(obj, "current_stage")
            if changed and before != after:
                changes.append(Change(obj.name, obj.version, before, after))
        elif _is(obj, SqlRegisteredModelAlias):
            changed, before, after = _history(obj, "version")
            if changed and before != after:
                changes.append(
                    Change(obj.name, after, alias=obj.alias, alias_before=before, alias_after=after)
                )
    for obj in session.deleted:
        if _is(obj, SqlModelVersion):
            if obj.current_stage == "Deleted_Internal":  # deleted earlier, audited then
                continue
            changes.append(Change(obj.name, obj.version, obj.current_stage, "Deleted_Internal"))
        elif _is(obj, SqlRegisteredModelAlias):
            changes.append(Change(obj.name, obj.version, alias=obj.alias, alias_before=obj.version))
    return changes


def _entry(op: Operation, change: Change | None, details: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        action=op.action,
        identity=op.identity,
        decision=op.decision,
        model=change.model if change else op.model,
        version=change.version if change else op.version,
        stage_before=change.stage_before if change else None,
        stage_after=change.stage_after if change else None,
        alias=change.alias if change else op.alias,
        alias_before=change.alias_before if change else None,
        alias_after=change.alias_after if change else None,
        reason=op.reason,
        rule=op.rule,
        request_id=op.request_id,
        details=details,
        workspace=op.workspace,
    )


def entries_for(op: Operation, changes: list[Change]) -> list[AuditEntry]:
    """Turn an operation and the changes of its transaction into audit rows.

    The row for the operation's own target comes first and carries its details; every
    other change (an archived version, an alias removed with its version) gets a row of
    its own marked as a side effect, so the stage and alias history stays complete.

    Args:
        op: The governed call.
        changes: What its flushes changed.

    Returns:
        The rows to append, main row first.
    """
    if not changes:
        return [_entry(op, None, op.details), *op.extra]
    if op.version is None and op.alias is None and op.action not in _VERSION_CREATING:
        # A call on the whole model (e.g. deleting it): its own row first, then one row
        # per version or alias it took along.
        rows = [_entry(op, None, op.details)]
        rows.extend(_entry(op, c, {"side_effect": True}) for c in changes)
        return [*rows, *op.extra]

    def is_target(change: Change) -> bool:
        if op.alias is not None:
            return change.alias == op.alias
        return op.version is None or change.version == op.version

    main = next((c for c in changes if is_target(c)), changes[0])
    rows = [_entry(op, main, op.details)]
    rows.extend(_entry(op, c, {"side_effect": True}) for c in changes if c is not main)
    rows.extend(op.extra)
    return rows


def _before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    if not session.info.get(WRITE_SESSION):
        return
    op = _operation.get()
    if op is None:
        return
    for obj in session.new:
        if _is(obj, SqlModelVersion) and obj.user_id is None:
            obj.user_id = op.identity.user


def _after_flush(session: Session, _ctx: Any) -> None:
    if session.info.get(WRITE_SESSION):
        session.info.setdefault(_CHANGES, []).extend(_changes_of_flush(session))


def _after_soft_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(_CHANGES, None)
    session.info.pop(HEAD_TAKEN, None)  # the head read belongs to the rolled-back transaction


def _before_commit(session: Session) -> None:
    if not session.info.get(WRITE_SESSION):
        return
    session.flush()
    changes: list[Change] = session.info.pop(_CHANGES, [])
    op = _operation.get()
    if op is None:
        if not changes:
            return
        # A write outside any governed call is a bug in the plugin or a new MLflow path;
        # record it rather than let it pass unseen.
        op = Operation(_UNATTRIBUTED, current_identity(), "allow", reason="no governed call")
    connection = session.connection()
    for hook in op.hooks:
        hook(connection)
    try:
        append(session, entries_for(op, changes))
        op.written = True
    except sa.exc.SQLAlchemyError as exc:
        if is_transient(exc):
            raise  # the whole transaction runs again (write_path); not a broken audit log
        raise AuditWriteError(
            f"The audit row for '{op.action}' could not be written "
            f"({type(exc.orig if hasattr(exc, 'orig') else exc).__name__}), so the change "
            "was not applied. Check that the governance tables exist and are writable "
            "(mlflow-governance db upgrade), then retry."
        ) from exc


def install(maker: sessionmaker[Session]) -> None:
    """Attach the audit listeners to the write session factory.

    Args:
        maker: The factory MLflow's managed sessions are built from.
    """
    event.listen(maker, "before_flush", _before_flush)
    event.listen(maker, "after_flush", _after_flush)
    event.listen(maker, "after_soft_rollback", _after_soft_rollback)
    event.listen(maker, "before_commit", _before_commit)
