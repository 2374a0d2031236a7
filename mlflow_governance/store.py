"""The governed registry store: MLflow's SQL store with every write authorised and audited.

Every write method below does three things and nothing else: run MLflow's own input
validation, describe the call (model, version, stage or alias), and hand MLflow's
implementation to :meth:`GovernedStore._govern`, the single governed write path. That
method resolves the actor, asks the policy, audits refusals in their own transaction and
runs the change inside an :class:`~mlflow_governance.audit.capture.Operation`, whose
audit rows the session listeners commit in the change's own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import sqlalchemy
from mlflow.entities.model_registry.model_version_stages import (
    DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS,
    get_canonical_stage,
)
from mlflow.exceptions import MlflowException
from mlflow.store.db.utils import _get_managed_session_maker, _get_routing_session_maker
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.store.workspace_aware_mixin import WorkspaceAwareMixin
from mlflow.utils.validation import (
    _validate_model_alias_name,
    _validate_model_alias_name_reserved,
    _validate_model_name,
    _validate_model_renaming,
    _validate_model_version_tag,
    _validate_registered_model_tag,
    _validate_tag_name,
    _validate_webhook_events,
    _validate_webhook_name,
    _validate_webhook_url,
)
from sqlalchemy.orm import Session

from mlflow_governance import db
from mlflow_governance.audit import capture
from mlflow_governance.audit.writer import (
    DECISION_ALLOW,
    DECISION_DENY,
    DECISION_WOULD_DENY,
)
from mlflow_governance.errors import governance_cause, to_mlflow
from mlflow_governance.exceptions import GovernanceError, PermissionDenied
from mlflow_governance.identity import Identity, current_identity
from mlflow_governance.policy import Policy, Subject, authorize, gates_for, tag_write_decision
from mlflow_governance.policy_source import PolicySource
from mlflow_governance.rbac import write_permission
from mlflow_governance.state import FOLDING_DIALECTS, LockedModel, lock_model
from mlflow_governance.store_base import GovernedStoreBase, checked_version
from mlflow_governance.workflow.effects import (
    delete_verdict,
    follow_rename,
    rename_verdict,
    request_hook,
)
from mlflow_governance.workflow.gate import GateKeeper
from mlflow_governance.workflow.moves import Move, Verdict
from mlflow_governance.workflow.requests import ALIAS, STAGE, Target

_logger = logging.getLogger(__name__)
T = TypeVar("T")

_DEFAULT_RULE = "default policy (audit-only)"

#: Tag keys the plugin keeps for itself; users cannot set or delete them.
RESERVED_TAG_PREFIX = "mlflow.governance."


class GovernedStore(GovernedStoreBase):
    """MLflow's SQL registry store with governance on every write.

    Args:
        db_uri: The plain SQLAlchemy URL (without ``governed+``).
        read_db_uri: Optional read replica URL, as MLflow's server passes it.
        tracking_uri: The tracking URI, for reading run metrics in gate checks.
    """

    def __init__(
        self, db_uri: str, read_db_uri: str | None = None, tracking_uri: str | None = None
    ) -> None:
        super().__init__(db_uri, read_db_uri=read_db_uri)
        self.tracking_uri = tracking_uri
        db.ensure_schema(self.engine)
        self._install_session_factory()
        self.policies = PolicySource(self._newest_policy)
        self.gatekeeper = GateKeeper(self)

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
            with capture.running(op):
                result = call()
            if not op.written:  # nothing reached a write session: record the call alone
                self.audit_alone(op)
            return result
        except GovernanceError as exc:
            raise to_mlflow(self._settle(exc, op, move)) from None
        except MlflowException as exc:
            cause = governance_cause(exc)
            if cause is not None:
                raise to_mlflow(self._settle(cause, op, move)) from None
            raise

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
            from mlflow_governance.workflow.service import Workflow

            view = Workflow(self).open_request(
                op.identity,
                move.model,
                move.version,
                move.target,
                comment="opened by a refused registry call",
                archive_existing=move.archive_existing,
                rollback=move.rollback,
            )
            request_id = view.id
            hint = f"Request #{view.id} is open: mlflow-governance approve {view.id}"
        op.decision, op.rule, op.reason = DECISION_DENY, verdict.rule, verdict.reason
        op.request_id = request_id
        self.audit_alone(op)
        return PermissionDenied(
            actor=op.identity.user,
            action=verdict.action or op.action,
            resource=_resource(op.model, op.version),
            reason=verdict.reason,
            rule=verdict.rule,
            hint=hint,
            request_id=request_id,
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
        op = capture.Operation(
            method,
            current_identity(),
            DECISION_DENY,
            model=model,
            version=version,
            reason=f"tag '{key}' is reserved: keys starting with '{RESERVED_TAG_PREFIX}' are "
            "written by mlflow-governance only",
            rule="reserved tags",
            details={"key": key},
        )
        self.audit_alone(op)
        raise to_mlflow(
            PermissionDenied(
                actor=op.identity.user,
                action=f"{'delete' if method.startswith('delete') else 'set'} tag '{key}'",
                resource=_resource(model, version),
                reason=op.reason or "",
                rule=op.rule,
                hint=f"Choose a key that does not start with '{RESERVED_TAG_PREFIX}'.",
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
                lambda: super(GovernedStore, self).set_registered_model_alias(
                    move.model, move.target.name, version
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
            lambda: super(GovernedStore, self).transition_model_version_stage(
                move.model, version, move.target.name, move.archive_existing
            ),
            model=move.model,
            version=version,
            stage=move.target.name,
            move=move,
            identity=identity,
            details={"via": "workflow"},
        )

    # ------------------------------------------------------------------ registered models

    def create_registered_model(
        self, name: Any, tags: Any = None, description: Any = None, deployment_job_id: Any = None
    ) -> Any:
        _validate_model_name(name)
        for tag in tags or []:
            _validate_registered_model_tag(tag.key, tag.value)
            self._refuse_reserved_tag("create_registered_model", tag.key, name)
        return self._govern(
            "create_registered_model",
            lambda: super(GovernedStore, self).create_registered_model(
                name, tags, description, deployment_job_id
            ),
            model=name,
            details=_tags_details(tags),
        )

    def update_registered_model(
        self, name: Any, description: Any, deployment_job_id: Any = None
    ) -> Any:
        _validate_model_name(name)
        return self._govern(
            "update_registered_model",
            lambda: super(GovernedStore, self).update_registered_model(
                name, description, deployment_job_id
            ),
            model=name,
            details={"description": description},
        )

    def rename_registered_model(self, name: Any, new_name: Any) -> Any:
        _validate_model_renaming(new_name)  # MLflow's order: the new name first
        _validate_model_name(name)

        def effects(
            policy: Policy, subject: Subject, locked: LockedModel, op: capture.Operation
        ) -> Verdict | None:
            verdict = rename_verdict(policy, subject, locked, new_name)
            if verdict is None:
                op.hooks.append(
                    request_hook(locked, op, version=None, why=f"model renamed to '{new_name}'")
                )
                op.hooks.append(lambda conn: follow_rename(conn, locked, new_name))
            return verdict

        return self._govern(
            "rename_registered_model",
            lambda: super(GovernedStore, self).rename_registered_model(name, new_name),
            model=name,
            details={"new_name": new_name},
            effects=effects,
        )

    def delete_registered_model(self, name: Any) -> Any:
        _validate_model_name(name)
        return self._govern(
            "delete_registered_model",
            lambda: super(GovernedStore, self).delete_registered_model(name),
            model=name,
            effects=_deleting(None, "model deleted"),
        )

    def set_registered_model_tag(self, name: Any, tag: Any) -> Any:
        _validate_model_name(name)
        _validate_registered_model_tag(tag.key, tag.value)
        self._refuse_reserved_tag("set_registered_model_tag", tag.key, name)
        return self._govern(
            "set_registered_model_tag",
            lambda: super(GovernedStore, self).set_registered_model_tag(name, tag),
            model=name,
            details={"key": tag.key, "value": tag.value},
        )

    def delete_registered_model_tag(self, name: Any, key: Any) -> Any:
        _validate_model_name(name)
        _validate_tag_name(key)
        self._refuse_reserved_tag("delete_registered_model_tag", key, name)
        return self._govern(
            "delete_registered_model_tag",
            lambda: super(GovernedStore, self).delete_registered_model_tag(name, key),
            model=name,
            details={"key": key},
        )

    # ------------------------------------------------------------------ model versions

    def create_model_version(
        self,
        name: Any,
        source: Any,
        run_id: Any = None,
        tags: Any = None,
        run_link: Any = None,
        description: Any = None,
        local_model_path: Any = None,
        model_id: str | None = None,
    ) -> Any:
        _validate_model_name(name)
        for tag in tags or []:
            _validate_model_version_tag(tag.key, tag.value)
            self._refuse_reserved_tag("create_model_version", tag.key, name)
        details = {"source": source, "run_id": run_id, "model_id": model_id}
        details.update(_tags_details(tags))
        return self._govern(
            "create_model_version",
            lambda: super(GovernedStore, self).create_model_version(
                name, source, run_id, tags, run_link, description, local_model_path, model_id
            ),
            model=name,
            details={k: v for k, v in details.items() if v is not None},
            tag_keys=tuple(tag.key for tag in tags or []),
        )

    def copy_model_version(self, src_mv: Any, dst_name: Any) -> Any:
        _validate_model_name(dst_name)
        # The copy's own writes (the model, if new, and the version) are governed and
        # audited as they happen; this row, written after them, ties them to the source.
        return self._govern(
            "copy_model_version",
            lambda: super(GovernedStore, self).copy_model_version(src_mv, dst_name),
            model=dst_name,
            details={"source_model": src_mv.name, "source_version": int(src_mv.version)},
        )

    def update_model_version(self, name: Any, version: Any, description: Any = None) -> Any:
        _validate_model_name(name)
        version = checked_version(version)
        return self._govern(
            "update_model_version",
            lambda: super(GovernedStore, self).update_model_version(name, version, description),
            model=name,
            version=version,
            details={"description": description},
        )

    def transition_model_version_stage(
        self, name: Any, version: Any, stage: Any, archive_existing_versions: Any
    ) -> Any:
        # MLflow's checks in MLflow's order: the stage, archiving into an inactive stage
        # (which MLflow refuses before touching the database), then name and version.
        canonical = get_canonical_stage(stage)
        if archive_existing_versions and canonical not in DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS:
            return super().transition_model_version_stage(
                name, version, stage, archive_existing_versions
            )
        _validate_model_name(name)
        version = checked_version(version)
        move = Move(
            name,
            version,
            Target("stage", canonical),
            archive_existing=bool(archive_existing_versions),
        )
        return self._govern(
            "transition_model_version_stage",
            lambda: super(GovernedStore, self).transition_model_version_stage(
                name, version, stage, move.archive_existing
            ),
            model=name,
            version=version,
            stage=canonical,
            move=move,
            details={"archive_existing_versions": bool(archive_existing_versions)},
        )

    def delete_model_version(self, name: Any, version: Any) -> Any:
        _validate_model_name(name)
        version = checked_version(version)
        return self._govern(
            "delete_model_version",
            lambda: super(GovernedStore, self).delete_model_version(name, version),
            model=name,
            version=version,
            effects=_deleting(version, f"version {version} deleted"),
        )

    def set_model_version_tag(self, name: Any, version: Any, tag: Any) -> Any:
        _validate_model_name(name)
        version = checked_version(version)
        _validate_model_version_tag(tag.key, tag.value)
        self._refuse_reserved_tag("set_model_version_tag", tag.key, name, version)
        return self._govern(
            "set_model_version_tag",
            lambda: super(GovernedStore, self).set_model_version_tag(name, version, tag),
            model=name,
            version=version,
            details={"key": tag.key, "value": tag.value},
            tag_keys=(tag.key,),
        )

    def delete_model_version_tag(self, name: Any, version: Any, key: Any) -> Any:
        _validate_model_name(name)
        version = checked_version(version)
        _validate_tag_name(key)
        self._refuse_reserved_tag("delete_model_version_tag", key, name, version)
        return self._govern(
            "delete_model_version_tag",
            lambda: super(GovernedStore, self).delete_model_version_tag(name, version, key),
            model=name,
            version=version,
            details={"key": key},
            tag_keys=(key,),
        )

    # ------------------------------------------------------------------ aliases

    def set_registered_model_alias(self, name: Any, alias: Any, version: Any) -> Any:
        _validate_model_name(name)
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
        version = checked_version(version)
        return self._govern(
            "set_registered_model_alias",
            lambda: super(GovernedStore, self).set_registered_model_alias(name, alias, version),
            model=name,
            version=version,
            alias=alias,
            move=Move(name, version, Target("alias", alias)),
        )

    def delete_registered_model_alias(self, name: Any, alias: Any) -> Any:
        _validate_model_name(name)
        _validate_model_alias_name(alias)
        return self._govern(
            "delete_registered_model_alias",
            lambda: super(GovernedStore, self).delete_registered_model_alias(name, alias),
            model=name,
            alias=alias,
            move=Move(name, None, Target("alias", alias), removing=True),
        )

    # ------------------------------------------------------------------ webhooks

    def create_webhook(
        self,
        name: Any,
        url: Any,
        events: Any,
        description: Any = None,
        secret: Any = None,
        status: Any = None,
    ) -> Any:
        _validate_webhook_name(name)
        _validate_webhook_url(url)
        _validate_webhook_events(events)
        return self._govern(
            "create_webhook",
            lambda: super(GovernedStore, self).create_webhook(
                name, url, events, description, secret, status
            ),
            details={"name": name, "url": url, "events": [str(e) for e in events]},
        )

    def update_webhook(
        self,
        webhook_id: Any,
        name: Any = None,
        description: Any = None,
        url: Any = None,
        events: Any = None,
        secret: Any = None,
        status: Any = None,
    ) -> Any:
        # MLflow looks the webhook up before checking the new values: a missing id is 404.
        SqlAlchemyStore.get_webhook(self, webhook_id)
        if name is not None:
            _validate_webhook_name(name)
        if url is not None:
            _validate_webhook_url(url)
        if events is not None:
            _validate_webhook_events(events)
        changed = {"name": name, "url": url, "status": str(status) if status else None}
        return self._govern(
            "update_webhook",
            lambda: super(GovernedStore, self).update_webhook(
                webhook_id, name, description, url, events, secret, status
            ),
            details={"webhook_id": webhook_id, **{k: v for k, v in changed.items() if v}},
        )

    def delete_webhook(self, webhook_id: Any) -> Any:
        return self._govern(
            "delete_webhook",
            lambda: super(GovernedStore, self).delete_webhook(webhook_id),
            details={"webhook_id": webhook_id},
        )

    def test_webhook(self, webhook_id: Any, event: Any = None) -> Any:
        return self._govern(
            "test_webhook",
            lambda: super(GovernedStore, self).test_webhook(webhook_id, event),
            details={"webhook_id": webhook_id, "event": str(event) if event else None},
        )


class GovernedWorkspaceStore(WorkspaceAwareMixin, GovernedStore):
    """The governed store for ``mlflow server --enable-workspaces``.

    Mirrors MLflow's ``WorkspaceAwareSqlAlchemyStore``: the mixin scopes every query to the
    request's workspace, and entries in several workspaces are expected.
    """

    def _initialize_store_state(self) -> None:
        pass


class _Refused(GovernanceError):
    """A refusal decided inside a write; :meth:`GovernedStore._settle` audits and raises it."""

    error_code = "PERMISSION_DENIED"

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


#: A state-dependent rule for a write: given the policy, the actor and the locked model,
#: why the write is refused (or None); it may add commit hooks to the operation.
Effects = Callable[[Policy, Subject, LockedModel, capture.Operation], Verdict | None]


def _deleting(version: int | None, why: str) -> Effects:
    def effects(
        policy: Policy, subject: Subject, locked: LockedModel, op: capture.Operation
    ) -> Verdict | None:
        verdict = delete_verdict(policy, subject, locked, version)
        if verdict is None:
            op.hooks.append(request_hook(locked, op, version=version, why=why))
        return verdict

    return effects


def _marking_writes(managed: Callable[..., Any]) -> Callable[..., Any]:

    @contextmanager
    def make_session(read_only: bool = True) -> Any:
        with managed(read_only=read_only) as session:
            if not read_only:
                session.info[capture.WRITE_SESSION] = True
                op = capture.current()
                if op is not None and op.decide is not None:
                    op.decide(session)
            yield session

    return make_session


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


def _tags_details(tags: Any) -> dict[str, Any]:
    if not tags:
        return {}
    return {"tags": {tag.key: tag.value for tag in tags}}
