"""The single governed write path: decide, audit, run MLflow's write, commit both.

:class:`GovernedWritePath` is what every write method of
:class:`~mlflow_governance.store.GovernedStore` hands its call to. :meth:`_govern`
decides what needs only the policy, then runs MLflow's own implementation inside an
:class:`~mlflow_governance.audit.capture.Operation`. What depends on registry state (the
gate, renames, deletions, names as the database compares them) is decided by the
operation's ``decide`` step as MLflow's write session opens, on the model's locked row
(:mod:`mlflow_governance.state`), so nothing can change between check and write. The
session listeners commit the audit rows in the change's own transaction; a refusal rolls
it back and is audited in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import sqlalchemy
from mlflow.exceptions import MlflowException
from mlflow.store.db.utils import _get_managed_session_maker, _get_routing_session_maker
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy.orm import Session

from mlflow_governance.audit import capture
from mlflow_governance.audit.refusal import refusal
from mlflow_governance.audit.writer import (
    DECISION_ALLOW,
    DECISION_DENY,
    DECISION_WOULD_DENY,
)
from mlflow_governance.exceptions import GovernanceError
from mlflow_governance.identity import Identity, current_identity
from mlflow_governance.method_permissions import write_permission
from mlflow_governance.mlflow_errors import database_cause, governance_cause, to_mlflow
from mlflow_governance.policy import Policy, Subject, authorize, gates_for, tag_write_decision
from mlflow_governance.state import FOLDING_DIALECTS, LockedModel, lock_model
from mlflow_governance.store_base import GovernedStoreBase
from mlflow_governance.transient import run_again_if_transient
from mlflow_governance.workflow.gate import GateKeeper
from mlflow_governance.workflow.moves import Move, Verdict
from mlflow_governance.workflow.request_rows import ALIAS, STAGE, Target

T = TypeVar("T")

_DEFAULT_RULE = "default policy (audit-only)"

#: Tag keys the plugin keeps for itself; users cannot set or delete them.
RESERVED_TAG_PREFIX = "mlflow.governance."


class GovernedWritePath(GovernedStoreBase):
    """MLflow's SQL registry store plus the governed write path its subclass uses.

    Subclasses set :attr:`gatekeeper` (and :attr:`policies`) in their constructor.
    """

    gatekeeper: GateKeeper

    def _install_session_factory(self) -> None:
        # Same routing as MLflow's constructor, but the write factory carries the audit
        # listeners; read sessions never write audit rows.
        write_maker = sqlalchemy.orm.sessionmaker(bind=self.engine)
        capture.install(write_maker)
        if self.read_engine is not None:
            read_maker = sqlalchemy.orm.sessionmaker(bind=self.read_engine)
            managed = _get_routing_session_maker(write_maker, read_maker, self.db_type)
        else:
            managed = _get_managed_session_maker(write_maker, self.db_type)
        self.ManagedSessionMaker = _marking_writes(managed)

    # ------------------------------------------------------------------ the governed path

    def _govern(
        self,
        method: str,
        call: Callable[[], T],
        *,
        model: str | None = None,
        version: int | None = None,
        stage: str | None = None,
        alias: str | None = None,
        details: dict[str, Any] | None = None,
        move: Move | None = None,
        identity: Identity | None = None,
        effects: Effects | None = None,
        tag_keys: tuple[str, ...] = (),
    ) -> T:
        """The single governed write path: decide, audit, run MLflow's write, commit both.

        What needs only the policy (the permission of the method) is decided first. What
        depends on registry state (gates, renames, deletions, canonical names) is decided
        by ``op.decide`` inside MLflow's own write session, on the model's locked row, so
        nothing can change between the check and the write. A refusal rolls that
        transaction back and is audited in a transaction of its own.
        """
        identity = identity or current_identity()
        op: capture.Operation | None = None
        try:
            policy = self._policy()
            op = capture.Operation(
                action=method,
                identity=identity,
                decision=DECISION_ALLOW,
                model=model,
                version=version,
                alias=alias,
                reason="no policy configured",
                rule=_DEFAULT_RULE,
                details=dict(details or {}),
                workspace=self._get_active_workspace() if self.supports_workspaces else None,
            )
            if stage is not None:
                op.details.setdefault("stage", stage)
            op.tag_keys = tag_keys
            if policy is not None:
                self._decide_early(policy, method, op, stage, move, effects)
            result = self._run_whole(op, call)
            if not op.written:  # nothing reached a write session: record the call alone
                self.audit_alone(op)
            return result
        except GovernanceError as exc:
            raise to_mlflow(self._settle_or_lost(exc, op, move)) from None
        except MlflowException as exc:
            cause = governance_cause(exc)
            if cause is not None:
                raise to_mlflow(self._settle_or_lost(cause, op, move)) from None
            lost = database_cause(exc) if exc.error_code == "TEMPORARILY_UNAVAILABLE" else None
            if lost is not None:  # MLflow's message would paste the SQL and its values
                raise to_mlflow(lost) from None
            raise  # e.g. a rename onto a taken name: MLflow's own, precise error
        except sqlalchemy.exc.OperationalError as exc:  # e.g. the audit row of audit_alone
            raise to_mlflow(exc) from None

    def _settle_or_lost(
        self, exc: GovernanceError, op: capture.Operation | None, move: Move | None
    ) -> GovernanceError | sqlalchemy.exc.OperationalError:
        # A refusal is audited (and its request opened) in transactions of their own; when
        # the database is lost there, the caller gets the retryable error, not a crash.
        try:
            return self._settle(exc, op, move)
        except sqlalchemy.exc.OperationalError as lost:
            return lost

    @staticmethod
    def _run_whole(op: capture.Operation, call: Callable[[], T]) -> T:
        """Run MLflow's write with ``op``, again as a whole after a deadlock.

        A deadlock or serialisation failure rolls back the change and its audit rows
        together; the next attempt starts from the operation as it was before the first,
        since what the failed attempt decided on the locked row may no longer hold.
        """
        before = capture.snapshot(op)

        def attempt() -> T:
            with capture.running(op):
                return call()

        return run_again_if_transient(attempt, before_again=lambda: capture.restore(op, before))

    def _decide_early(
        self,
        policy: Policy,
        method: str,
        op: capture.Operation,
        stage: str | None,
        move: Move | None,
        effects: Effects | None,
    ) -> None:
        if move is None:
            self._permission(policy, method, op, stage)
        elif move.target.kind == STAGE and any(
            g.archive_existing for g in gates_for(policy, move.model, stage=move.target.name)
        ):
            # The gate's archive_existing is part of every move into its stage; MLflow
            # takes the flag before its session opens, so it is settled here.
            move.archive_existing = True
        if op.model is not None and (move is not None or effects is not None or self._folding):
            op.decide = partial(self._decide_locked, policy, method, op, stage, move, effects)

    def _permission(
        self, policy: Policy, method: str, op: capture.Operation, stage: str | None
    ) -> None:
        """The method's own permission, from the policy alone; raises when refused.

        A version tag that a gate checks may be written only by the roles the gate trusts
        (``set_by``), whatever the method: setting, deleting, or tags at creation.
        """
        permission = write_permission(method, stage=stage, alias=op.alias)
        subject = self._subject(op.identity)
        decision = authorize(policy, subject, permission, op.model)
        op.decision, op.rule, op.reason = decision.effect, decision.rule, decision.reason
        if op.decision == DECISION_DENY:
            raise _Refused(Verdict(op.rule, op.reason or "", decision.hint, action=permission))
        for key in op.tag_keys:
            assert op.model is not None
            trusted = tag_write_decision(policy, subject, op.model, key)
            if trusted is None or trusted.granted:
                continue
            op.decision, op.rule, op.reason = trusted.effect, trusted.rule, trusted.reason
            if op.decision == DECISION_DENY:
                raise _Refused(
                    Verdict(
                        trusted.rule,
                        trusted.reason,
                        trusted.hint,
                        action=f"{'delete' if method.startswith('delete') else 'set'} tag '{key}'",
                    )
                )

    def _decide_locked(
        self,
        policy: Policy,
        method: str,
        op: capture.Operation,
        stage: str | None,
        move: Move | None,
        effects: Effects | None,
        session: Session,
    ) -> None:
        """Decide on the model's locked row, inside MLflow's write session."""
        assert op.model is not None
        op.hooks.clear()  # a retried transaction decides afresh
        version = move.version if move is not None else op.version
        locked = lock_model(session, self, op.model, version)
        if locked is None:
            return  # no such model: MLflow refuses the write with its own error
        if locked.name != op.model:
            # The database compares names case- and accent-insensitively: decide on the
            # model the write will really change, not on the caller's spelling.
            op.details.setdefault("requested_name", op.model)
            op.model = locked.name
            if move is not None:
                move.model = locked.name
            else:
                self._permission(policy, method, op, stage)
        verdict: Verdict | None = None
        if move is not None:
            if move.target.kind == ALIAS:
                spelled = locked.alias_spelling(move.target.name, _literal_aliases(policy))
                if spelled != move.target.name:
                    op.details.setdefault("requested_alias", move.target.name)
                    move.target = Target(ALIAS, spelled)
                    op.alias = spelled
            verdict = self.gatekeeper.guard(op.identity, policy, move, op, locked)
        if verdict is None and effects is not None:
            verdict = effects(policy, self._subject(op.identity), locked, op)
        if verdict is None:
            return
        op.rule, op.reason, op.request_id = verdict.rule, verdict.reason, verdict.request_id
        if not policy.enforcing:
            op.decision = DECISION_WOULD_DENY
            return
        raise _Refused(verdict)

    def _settle(
        self, exc: GovernanceError, op: capture.Operation | None, move: Move | None
    ) -> GovernanceError:
        """Turn a refusal into the audited PermissionDenied, once its write rolled back.

        A move held back by a gate opens (or reuses) the pending request here, in a
        transaction of its own, so the refusal can name it.
        """
        if not isinstance(exc, _Refused) or op is None:
            return exc
        verdict = exc.verdict
        request_id, hint = verdict.request_id, verdict.hint
        if verdict.open_request and move is not None and move.version is not None:
            from mlflow_governance.workflow.promotion import Workflow

            workflow, held, number = Workflow(self), move, move.version

            # Its own transaction, racing the apply of another request on MariaDB, which
            # may pick it as a deadlock's victim: opened again, never a crash.
            view = run_again_if_transient(
                lambda: workflow.open_request(
                    op.identity,
                    held.model,
                    number,
                    held.target,
                    comment="opened by a refused registry call",
                    archive_existing=held.archive_existing,
                    rollback=held.rollback,
                )
            )
            request_id = view.id
            hint = request_hint(view.id, view.model)
        return run_again_if_transient(lambda: self._refusal_of(op, verdict, request_id, hint))

    def _refusal_of(
        self, op: capture.Operation, verdict: Verdict, request_id: int | None, hint: str | None
    ) -> GovernanceError:
        return refusal(
            self.engine,
            op.identity,
            action=op.action,
            asked=verdict.action or op.action,
            resource=_resource(op.model, op.version),
            reason=verdict.reason,
            rule=verdict.rule,
            hint=hint,
            model=op.model,
            version=op.version,
            alias=op.alias,
            request_id=request_id,
            workspace=op.workspace,
            details=op.details,
        )

    def _subject(self, identity: Identity) -> Subject:
        return self.subject_of(identity)

    @property
    def _folding(self) -> bool:
        return self.engine.dialect.name in FOLDING_DIALECTS

    def _refuse_reserved_tag(
        self, method: str, key: str, model: str, version: int | None = None
    ) -> None:
        # A refusal like any other: PERMISSION_DENIED, audited, whoever asks (admins too),
        # since these tags are the plugin's own record and no policy grants writing them.
        if not key.startswith(RESERVED_TAG_PREFIX):
            return
        raise to_mlflow(
            refusal(
                self.engine,
                current_identity(),
                action=method,
                asked=f"{'delete' if method.startswith('delete') else 'set'} tag '{key}'",
                resource=_resource(model, version),
                reason=f"tag '{key}' is reserved: keys starting with '{RESERVED_TAG_PREFIX}' "
                "are written by mlflow-governance only",
                rule="reserved tags",
                hint=f"Choose a key that does not start with '{RESERVED_TAG_PREFIX}'.",
                model=model,
                version=version,
                details={"key": key},
            )
        )

    def governed_move(self, identity: Identity, move: Move) -> Any:
        """Make a stage or alias move for ``identity`` through the governed path.

        Used by the workflow (applying a request, rolling back); the gate runs again.
        """
        version = move.version
        assert version is not None
        if move.target.kind == "alias":
            return self._govern(
                "set_registered_model_alias",
                lambda: SqlAlchemyStore.set_registered_model_alias(
                    self, move.model, move.target.name, version
                ),
                model=move.model,
                version=version,
                alias=move.target.name,
                move=move,
                identity=identity,
                details={"via": "workflow"},
            )
        return self._govern(
            "transition_model_version_stage",
            lambda: SqlAlchemyStore.transition_model_version_stage(
                self, move.model, version, move.target.name, move.archive_existing
            ),
            model=move.model,
            version=version,
            stage=move.target.name,
            move=move,
            identity=identity,
            details={"via": "workflow"},
        )


class _Refused(GovernanceError):
    """A refusal decided inside a write; :meth:`GovernedStore._settle` audits and raises it."""

    error_code = "PERMISSION_DENIED"

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


#: A state-dependent rule for a write: given the policy, the actor and the locked model,
#: why the write is refused (or None); it may add commit hooks to the operation.
Effects = Callable[[Policy, Subject, LockedModel, capture.Operation], Verdict | None]


def _marking_writes(managed: Callable[..., Any]) -> Callable[..., Any]:

    @contextmanager
    def make_session(read_only: bool = True) -> Any:
        with managed(read_only=read_only) as session:
            if not read_only:
                session.info[capture.WRITE_SESSION] = True
                op = capture.current()
                if op is not None and session.get_bind().dialect.name in FOLDING_DIALECTS:
                    # InnoDB's REPEATABLE READ would let MLflow's reads after our row lock
                    # see the snapshot from before the wait: the next version number is
                    # then taken twice and writers fail. Each statement sees what was
                    # committed when it runs instead; the model's row lock orders them.
                    # SET TRANSACTION, sent before the transaction's first statement, lasts
                    # for this transaction only: one round trip, and nothing to reset when
                    # the connection goes back to the pool (SQLAlchemy's isolation_level
                    # option costs one to set and one to reset).
                    session.connection().exec_driver_sql(_READ_COMMITTED_NEXT)
                if op is not None and op.decide is not None:
                    op.decide(session)
            yield session

    return make_session


_READ_COMMITTED_NEXT = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"


def _literal_aliases(policy: Policy) -> list[str]:
    return [
        alias
        for gate in policy.gates.values()
        for alias in gate.targets.aliases
        if not any(ch in alias for ch in "*?[")
    ]


def _resource(model: str | None, version: int | None) -> str:
    if model is None:
        return "the registry"
    return f"model '{model}' version {version}" if version is not None else f"model '{model}'"


def request_hint(request_id: int, model: str) -> str:
    """What a caller held back by a gate reads next: the request and where to follow it.

    The reader is the requester, not an approver: the refusal's reason already says what
    the gate needs; they learn where to follow the request, not a command only approvers
    may run.
    """
    from mlflow_governance.links import follow_request

    return f"Request #{request_id} is open. {follow_request(request_id, model)}."
