"""What the governed store is built on: policy access, raw reads and read authorisation.

:class:`GovernedStoreBase` holds everything the single write path in
:mod:`mlflow_governance.store` leans on but that is not itself a write: which policy is in
force, the plugin's own unfiltered reads, auditing a call on its own, and the read side
of access control (single objects refused, searches filtered in SQL so pages stay full).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import sqlalchemy
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.model_registry import (
    SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT,
    SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT,
)
from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlRegisteredModel
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.search_utils import SearchModelUtils, SearchModelVersionUtils

from mlflow_governance import config
from mlflow_governance.audit import capture
from mlflow_governance.audit.refusal import refusal
from mlflow_governance.audit.writer import append
from mlflow_governance.exceptions import GovernanceWarning
from mlflow_governance.identity import Identity, current_identity
from mlflow_governance.inputs import shown
from mlflow_governance.mlflow_errors import to_mlflow
from mlflow_governance.policy import Policy, Subject, authorize
from mlflow_governance.policy_source import PolicySource
from mlflow_governance.reads import name_clause, readable_globs
from mlflow_governance.workflow.request_rows import VersionIdentity

# The model-name globs the current reader may see, while a governed search runs.
_READ_SCOPE: ContextVar[tuple[str, ...] | None] = ContextVar(
    "mlflow_governance_read_scope", default=None
)


#: MLflow keeps version numbers in a 32-bit INTEGER column on every backend.
MAX_VERSION = 2**31 - 1


def checked_version(version: Any) -> int:
    """MLflow's version validation, plus a bound no stored version can exceed.

    A number beyond the column's range would otherwise reach the database and come back
    as an overflow (HTTP 500) instead of a clear refusal.

    Raises:
        MlflowException: INVALID_PARAMETER_VALUE for a non-integer or out-of-range version.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
    from mlflow.utils.validation import _validate_model_version

    number = int(_validate_model_version(version))
    if not -MAX_VERSION <= number <= MAX_VERSION:
        raise MlflowException(
            f"Model version {version} is out of range: versions are whole numbers from 1 "
            f"to {MAX_VERSION}.",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return number


#: Registry columns whose length MLflow's own validation leaves unchecked (it checks tag
#: keys, 250, and aliases, 255, against their columns): what each holds, in characters.
MODEL_NAME_CHARS = 256
DESCRIPTION_CHARS = 5000
MODEL_TAG_VALUE_CHARS = 5000  # registered_model_tags.value; MLflow validates 100,000
SOURCE_CHARS = 500  # model_versions.source and run_link

#: Half of a UTF-16 pair: a valid Python character no database driver can encode.
_SURROGATE = re.compile("[\ud800-\udfff]")


def checked_length(what: str, value: Any, limit: int, dialect: str) -> None:
    """Refuse a text longer than the registry column that would store it.

    PostgreSQL and MySQL refuse it with an error MLflow passes on as BAD_REQUEST with the
    SQL statement in its message (MySQL without strict mode cuts it short instead).
    SQLite keeps it, as stock MLflow does there, so SQLite is left alone.

    Args:
        what: What the value is, for the message (``Model name``).
        value: What the caller sent (anything but text is left to MLflow).
        limit: The column's length in characters.
        dialect: The database's SQLAlchemy dialect name.

    Raises:
        MlflowException: INVALID_PARAMETER_VALUE when ``value`` is longer than ``limit``.
    """
    if dialect != "sqlite" and isinstance(value, str) and len(value) > limit:
        raise MlflowException(
            f"{what} {shown(value)} is {len(value):,} characters long; the model registry "
            f"stores at most {limit:,}. Send a shorter {what.lower()}.",
            error_code=INVALID_PARAMETER_VALUE,
        )


def checked_search(
    filter_string: Any,
    page_token: Any,
    parse: Callable[[str], list[dict[str, Any]]],
    dialect: str,
) -> None:
    """Refuse a search the database would answer with an error, before its session opens.

    A lone surrogate in the filter (``name = '\\ud800'``, which JSON and Python allow)
    reaches the driver, which cannot encode it: MLflow reports INTERNAL_ERROR. On
    PostgreSQL a LIKE pattern ending in its escape character (a backslash) fails once a
    row is compared with it, and MLflow answers BAD_REQUEST with the SQL in the message.
    A page token is base64; one with other characters makes MLflow's decoder raise a
    bare ValueError.

    Args:
        filter_string: The search filter.
        page_token: The page token.
        parse: MLflow's parser of this search's filters (its own errors are left to it).
        dialect: The database's SQLAlchemy dialect name.

    Raises:
        MlflowException: INVALID_PARAMETER_VALUE for any of these.
    """
    if isinstance(filter_string, str):
        found = _SURROGATE.search(filter_string)
        if found is not None:
            raise MlflowException(
                f"Invalid search filter: it holds U+{ord(found.group()):04X} at position "
                f"{found.start()}, half of a UTF-16 surrogate pair, which no database can "
                "compare. Remove it, or send the whole character it was part of.",
                error_code=INVALID_PARAMETER_VALUE,
            )
        if dialect == "postgresql" and "\\" in filter_string:
            _refuse_trailing_escape(filter_string, parse)
    if isinstance(page_token, str) and not page_token.isascii():
        raise MlflowException(
            f"Invalid page token {shown(page_token)}: send the next_page_token of the "
            "previous page as it was returned.",
            error_code=INVALID_PARAMETER_VALUE,
        )


def _refuse_trailing_escape(
    filter_string: str, parse: Callable[[str], list[dict[str, Any]]]
) -> None:
    try:
        clauses = parse(filter_string)
    except MlflowException:
        return  # MLflow refuses the filter itself, with its own message
    for clause in clauses:
        value = clause.get("value")
        if clause.get("comparator") not in ("LIKE", "ILIKE") or not isinstance(value, str):
            continue
        if (len(value) - len(value.rstrip("\\"))) % 2:
            raise MlflowException(
                f"Invalid search filter: the pattern {shown(value)} ends with a backslash, "
                "which escapes the character after it in a LIKE pattern. Write two "
                "backslashes to match one.",
                error_code=INVALID_PARAMETER_VALUE,
            )


class GovernedStoreBase(SqlAlchemyStore):
    """MLflow's SQL registry store plus the policy in force and governed reads.

    Subclasses set :attr:`policies` (and :attr:`tracking_uri`) in their constructor.
    """

    policies: PolicySource
    #: The tracking server gate checks read run metrics from (None: MLflow's default).
    tracking_uri: str | None = None

    # ------------------------------------------------------------------ raw access
    # The plugin's own reads bypass read authorisation: a gate must see the version even
    # when the person moving it may not read it, and nothing here reaches a user unfiltered.

    def raw_version(self, name: str, version: int) -> Any:
        """The model version as MLflow stores it, without read checks."""
        return SqlAlchemyStore.get_model_version(self, name, version)

    def raw_download_uri(self, name: str, version: int) -> str:
        """Where the version's files are, without read checks."""
        return str(SqlAlchemyStore.get_model_version_download_uri(self, name, version))

    def raw_version_by_alias(self, name: str, alias: str) -> Any:
        """The version an alias points at, without read checks."""
        return SqlAlchemyStore.get_model_version_by_alias(self, name, alias)

    def raw_latest_versions(self, name: str, stages: list[str]) -> list[Any]:
        """The newest version per stage, without read checks."""
        return list(SqlAlchemyStore.get_latest_versions(self, name, stages))

    def raw_identity(self, name: str, version: int) -> tuple[str, VersionIdentity]:
        """The stored spelling of a live version's model name, and the version's identity.

        Raises:
            MlflowException: RESOURCE_DOES_NOT_EXIST for a missing version.
        """
        mv = self.raw_version(name, version)  # MLflow's own 404 for a missing version
        with self.ManagedSessionMaker() as session:
            model = (
                self._get_query(session, SqlRegisteredModel)
                .filter(SqlRegisteredModel.name == mv.name)
                .one()
            )
            return str(model.name), VersionIdentity(
                str(model.workspace) if self.supports_workspaces else None,
                int(model.creation_time),
                int(mv.creation_timestamp),
            )

    def subject_of(self, identity: Identity) -> Subject:
        """The policy's view of an actor, in the workspace of the current call."""
        return Subject(identity.user, identity.groups, self.active_workspace())

    def active_workspace(self) -> str | None:
        """The MLflow workspace of the current call, on workspace-aware stores."""
        return self._get_active_workspace() if self.supports_workspaces else None

    def _newest_policy(self) -> tuple[int, str] | None:
        from mlflow_governance.workflow.tables import policies

        with self.engine.connect() as conn:
            row = conn.execute(
                sqlalchemy.select(policies.c.id, policies.c.content)
                .order_by(policies.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else (int(row.id), str(row.content))

    # ------------------------------------------------------------------ decisions

    def _policy(self) -> Policy | None:
        loaded = self.policies.current()
        if loaded is None:
            warnings.warn(
                "mlflow-governance: no policy configured; running the built-in audit-only "
                "default (nothing is refused, everything is recorded). Set "
                f"{config.ENV_POLICY} or run 'mlflow-governance policy apply FILE'.",
                GovernanceWarning,
                stacklevel=1,
            )
            return None
        return loaded.policy

    def require(self, identity: Identity, permission: str, model: str | None, action: str) -> None:
        """Refuse, and audit the refusal, unless the policy grants ``permission``.

        For the plugin's own reads (requests, audit rows, history), which MLflow's store
        methods do not cover.

        Args:
            identity: The actor.
            permission: E.g. ``audit:read``.
            model: The model concerned; None needs a grant on every model.
            action: The action name the refusal is audited under.

        Raises:
            PermissionDenied: Refused in ``enforce`` mode.
        """
        policy = self._policy()
        if policy is None:
            return
        decision = authorize(policy, self.subject_of(identity), permission, model)
        if not decision.refused:
            return
        raise refusal(
            self.engine,
            identity,
            action=action,
            asked=permission,
            resource=f"model '{model}'" if model else "every model",
            reason=decision.reason,
            rule=decision.rule,
            hint=decision.hint,
            model=model,
        )

    def audit_alone(self, op: capture.Operation) -> None:
        """Record an operation in a transaction of its own (refusals, calls without a DB write)."""
        with self.engine.begin() as connection:
            append(connection, capture.entries_for(op, []))

    # ------------------------------------------------------------------ reads

    def _check_read(self, model: str) -> None:
        policy = self._policy()
        if policy is None or not policy.enforcing:
            return
        identity = current_identity()
        decision = authorize(policy, self.subject_of(identity), "read", model)
        if decision.refused:
            raise to_mlflow(
                refusal(
                    self.engine,
                    identity,
                    action="read",
                    resource=f"model '{model}'",
                    reason=decision.reason,
                    rule=decision.rule,
                    hint=decision.hint,
                    model=model,
                )
            )

    @contextmanager
    def _read_scope(self) -> Iterator[None]:
        policy = self._policy()
        globs = None
        if policy is not None and policy.enforcing:
            identity = current_identity()
            globs = readable_globs(policy, self.subject_of(identity))
        if globs is None:
            yield
            return
        token = _READ_SCOPE.set(globs)
        try:
            yield
        finally:
            _READ_SCOPE.reset(token)

    def _get_workspace_clauses(self, model: Any) -> list[Any]:
        clauses: list[Any] = super()._get_workspace_clauses(model)
        globs = _READ_SCOPE.get()
        if globs is not None and model in (SqlRegisteredModel, SqlModelVersion):
            clauses.append(name_clause(model.name, globs, self.engine.dialect.name))
        return clauses

    def get_registered_model(self, name: Any) -> Any:
        self._check_read(name)
        return super().get_registered_model(name)

    def get_latest_versions(self, name: Any, stages: Any = None) -> Any:
        self._check_read(name)
        return super().get_latest_versions(name, stages)

    def get_model_version(self, name: Any, version: Any) -> Any:
        version = checked_version(version)
        self._check_read(name)
        return super().get_model_version(name, version)

    def get_model_version_download_uri(self, name: Any, version: Any) -> Any:
        version = checked_version(version)
        self._check_read(name)
        return super().get_model_version_download_uri(name, version)

    def get_model_version_by_alias(self, name: Any, alias: Any) -> Any:
        self._check_read(name)
        return super().get_model_version_by_alias(name, alias)

    def search_registered_models(
        self,
        filter_string: Any = None,
        max_results: Any = SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT,
        order_by: Any = None,
        page_token: Any = None,
    ) -> Any:
        dialect = self.engine.dialect.name
        checked_search(filter_string, page_token, SearchModelUtils.parse_search_filter, dialect)
        with self._read_scope():
            return super().search_registered_models(
                filter_string, max_results, order_by, page_token
            )

    def search_model_versions(
        self,
        filter_string: Any = None,
        max_results: Any = SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT,
        order_by: Any = None,
        page_token: Any = None,
    ) -> Any:
        parse = SearchModelVersionUtils.parse_search_filter
        checked_search(filter_string, page_token, parse, self.engine.dialect.name)
        with self._read_scope():
            return super().search_model_versions(filter_string, max_results, order_by, page_token)
