"""The governed registry store: MLflow's SQL store with every write authorised and audited.

Every write method below does three things and nothing else: run MLflow's own input
validation, describe the call (model, version, stage or alias, and the rules its side
effects fall under), and hand MLflow's implementation to ``_govern``, the single
governed write path in :mod:`mlflow_governance.write_path`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mlflow.entities.model_registry.model_version_stages import (
    DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS,
    get_canonical_stage,
)
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS
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

from mlflow_governance import db
from mlflow_governance.audit import capture
from mlflow_governance.policy import Policy, Subject
from mlflow_governance.policy_source import PolicySource
from mlflow_governance.state import LockedModel
from mlflow_governance.store_base import (
    DESCRIPTION_CHARS,
    MODEL_NAME_CHARS,
    MODEL_TAG_VALUE_CHARS,
    SOURCE_CHARS,
    checked_length,
    checked_version,
)
from mlflow_governance.workflow.effects import (
    delete_verdict,
    follow_rename,
    rename_verdict,
    request_hook,
)
from mlflow_governance.workflow.gate import GateKeeper
from mlflow_governance.workflow.moves import Move, Verdict
from mlflow_governance.workflow.request_rows import Target
from mlflow_governance.write_path import (
    Effects,
    GovernedWritePath,
)

T = TypeVar("T")


class GovernedStore(GovernedWritePath):
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
            self._fitting(
                lambda: super(GovernedStore, self).create_registered_model(
                    name, tags, description, deployment_job_id
                ),
                ("Model name", name, MODEL_NAME_CHARS),
                ("Description", description, DESCRIPTION_CHARS),
                *(("Tag value", tag.value, MODEL_TAG_VALUE_CHARS) for tag in tags or []),
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
            self._fitting(
                lambda: super(GovernedStore, self).update_registered_model(
                    name, description, deployment_job_id
                ),
                ("Description", description, DESCRIPTION_CHARS),
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

        def rename() -> Any:
            try:
                return super(GovernedStore, self).rename_registered_model(name, new_name)
            except MlflowException as exc:
                if not _name_taken_on_mysql(exc):
                    raise
                # MLflow's own answer on the other backends; MariaDB reports the taken
                # name as a foreign key error from its cascade onto the versions.
                raise MlflowException(
                    f"Registered Model (name={new_name}) already exists.",
                    RESOURCE_ALREADY_EXISTS,
                ) from None

        return self._govern(
            "rename_registered_model",
            self._fitting(rename, ("New model name", new_name, MODEL_NAME_CHARS)),
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
            self._fitting(
                lambda: super(GovernedStore, self).set_registered_model_tag(name, tag),
                ("Tag value", tag.value, MODEL_TAG_VALUE_CHARS),
            ),
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
            self._fitting(
                lambda: super(GovernedStore, self).create_model_version(
                    name, source, run_id, tags, run_link, description, local_model_path, model_id
                ),
                ("Source", source, SOURCE_CHARS),
                ("Run link", run_link, SOURCE_CHARS),
                ("Description", description, DESCRIPTION_CHARS),
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
            self._fitting(
                lambda: super(GovernedStore, self).copy_model_version(src_mv, dst_name),
                ("Model name", dst_name, MODEL_NAME_CHARS),
            ),
            model=dst_name,
            details={"source_model": src_mv.name, "source_version": int(src_mv.version)},
        )

    def update_model_version(self, name: Any, version: Any, description: Any = None) -> Any:
        _validate_model_name(name)
        version = checked_version(version)
        return self._govern(
            "update_model_version",
            self._fitting(
                lambda: super(GovernedStore, self).update_model_version(name, version, description),
                ("Description", description, DESCRIPTION_CHARS),
            ),
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

    def _fitting(self, call: Callable[[], T], *texts: tuple[str, Any, int]) -> Callable[[], T]:
        """``call``, run only when each ``(what, value, limit)`` text fits its column.

        It runs as MLflow's write inside ``_govern``: after the policy has decided, so a
        refusal is audited whatever the name (``tests/workflow/test_bypass.py``), and
        before MLflow's session opens, so no SQL is sent. A text too long for its column
        is an input error MLflow itself refuses (on PostgreSQL and MySQL, as BAD_REQUEST
        with the SQL in its message), not a policy refusal: like MLflow's other
        validation failures, and like those BAD_REQUESTs, it leaves no audit row.
        """
        dialect = self.engine.dialect.name

        def checked() -> T:
            for what, value, limit in texts:
                checked_length(what, value, limit, dialect)
            return call()

        return checked

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


def _deleting(version: int | None, why: str) -> Effects:
    def effects(
        policy: Policy, subject: Subject, locked: LockedModel, op: capture.Operation
    ) -> Verdict | None:
        verdict = delete_verdict(policy, subject, locked, version)
        if verdict is None:
            op.hooks.append(request_hook(locked, op, version=version, why=why))
        return verdict

    return effects


def _name_taken_on_mysql(exc: BaseException) -> bool:
    """Whether MySQL/MariaDB refused a rename because the new name is taken."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        orig = getattr(current, "orig", None)
        code = getattr(orig, "args", (None,))[0] if orig is not None else None
        # 1062: duplicate entry; 1761: a foreign key cascade would duplicate a child key.
        if code in (1062, 1761):
            return True
        current = current.__cause__ or current.__context__
    return False


def _tags_details(tags: Any) -> dict[str, Any]:
    if not tags:
        return {}
    return {"tags": {tag.key: tag.value for tag in tags}}
