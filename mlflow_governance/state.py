"""Registry state as the write's own transaction sees it, on rows locked for that write.

A gate that read the version's stage in one session and let the write run in another
would leave a window in which a concurrent change slips between check and write. The
governed store therefore decides inside MLflow's write session: :func:`lock_model` takes
the registered model's row lock (``SELECT ... FOR UPDATE`` on PostgreSQL and MySQL, the
database write lock on SQLite) before MLflow reads anything, and :class:`LockedModel`
answers the gate's questions from that same transaction.

Every governed writer of a model takes the same lock first, so while a decision is being
made no other governed write can change the model's stages, aliases or versions.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlRegisteredModel,
    SqlRegisteredModelAlias,
)

from mlflow_governance.audit.tables import HEAD_ROW_ID, audit_head
from mlflow_governance.workflow.requests import VersionIdentity

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mlflow_governance.store_base import GovernedStoreBase

#: Backends whose default collation compares names case- and accent-insensitively.
FOLDING_DIALECTS = frozenset({"mysql", "mariadb"})

# SQLite has no row locks. Any write takes the database's write lock, and this one
# touches the chain head page that the audit row dirties at commit anyway, so taking the
# lock early costs no extra page.
_SQLITE_WRITE_LOCK = (
    sa.update(audit_head).where(audit_head.c.id == HEAD_ROW_ID).values(seq=audit_head.c.seq)
)


def fold(name: str) -> str:
    """A name as MySQL's default collations compare it: case and accents ignored.

    Args:
        name: A model or alias name.

    Returns:
        The casefolded name without combining marks (``Fráud-X`` -> ``fraud-x``).
    """
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@dataclass(frozen=True)
class VersionState:
    """One live model version, as the locked transaction sees it."""

    row: Any

    @property
    def number(self) -> int:
        """The version number."""
        return int(self.row.version)

    @property
    def stage(self) -> str:
        """The current stage."""
        return str(self.row.current_stage)

    @property
    def creator(self) -> str | None:
        """Who created the version (stamped by the governed store)."""
        return None if self.row.user_id is None else str(self.row.user_id)

    @property
    def created(self) -> int:
        """Creation time in ms, part of the version's identity."""
        return int(self.row.creation_time)

    def entity(self) -> Any:
        """The MLflow ``ModelVersion`` entity, for gate checks."""
        return self.row.to_mlflow_entity()

    @property
    def download_uri(self) -> str:
        """Where the version's files are (as MLflow's download URI resolves it)."""
        return str(self.row.storage_location or self.row.source)


class LockedModel:
    """A registered model whose row lock the current write transaction holds.

    Args:
        session: MLflow's write session for the governed call.
        store: The governed store (for its workspace-scoped queries).
        row: The registered model row, locked.
    """

    def __init__(self, session: Session, store: GovernedStoreBase, row: Any) -> None:
        self._session = session
        self._store = store
        self._versions: dict[int, VersionState | None] = {}
        # Read now: the write renames or deletes the row before its commit hooks run.
        #: The name as the database stores it (the canonical spelling).
        self.name = str(row.name)
        #: Creation time of the registered model in ms.
        self.created = int(row.creation_time)
        #: The MLflow workspace, on workspace-aware stores; None otherwise.
        self.workspace = str(row.workspace) if store.supports_workspaces else None

    @property
    def connection(self) -> sa.Connection:
        """The transaction's connection, for the plugin's own tables."""
        return self._session.connection()

    def identity(self, version: VersionState) -> VersionIdentity:
        """The identity a request for ``version`` is bound to."""
        return VersionIdentity(self.workspace, self.created, version.created)

    def version(self, number: int) -> VersionState | None:
        """A live version, or None when there is no such version."""
        if number not in self._versions:
            row = (
                self._store._get_query(self._session, SqlModelVersion)
                .filter(
                    SqlModelVersion.name == self.name,
                    SqlModelVersion.version == number,
                    SqlModelVersion.current_stage != STAGE_DELETED_INTERNAL,
                )
                .first()
            )
            self._versions[number] = None if row is None else VersionState(row)
        return self._versions[number]

    def in_stage(self, stage: str) -> list[VersionState]:
        """The live versions standing in ``stage``."""
        rows = (
            self._store._get_query(self._session, SqlModelVersion)
            .filter(SqlModelVersion.name == self.name, SqlModelVersion.current_stage == stage)
            .all()
        )
        return [VersionState(row) for row in rows]

    @cached_property
    def versions(self) -> list[VersionState]:
        """Every live version of the model."""
        rows = (
            self._store._get_query(self._session, SqlModelVersion)
            .filter(
                SqlModelVersion.name == self.name,
                SqlModelVersion.current_stage != STAGE_DELETED_INTERNAL,
            )
            .all()
        )
        for row in rows:
            self._versions[int(row.version)] = VersionState(row)
        return [VersionState(row) for row in rows]

    @cached_property
    def aliases(self) -> dict[str, int]:
        """Alias -> version number, spelled as stored."""
        rows = (
            self._store._get_query(self._session, SqlRegisteredModelAlias)
            .filter(SqlRegisteredModelAlias.name == self.name)
            .all()
        )
        return {str(row.alias): int(row.version) for row in rows}

    def aliases_of(self, number: int) -> list[str]:
        """The aliases pointing at version ``number``."""
        return sorted(alias for alias, held in self.aliases.items() if held == number)

    def alias_spelling(self, alias: str, known: Iterable[str] = ()) -> str:
        """The spelling of the alias the database would take ``alias`` for.

        On case- and accent-insensitive backends ``CHAMPION`` names ``champion``; the
        gate must decide on the alias the write will really move. An alias the model
        does not hold yet takes the spelling of a ``known`` name (the policy's) that the
        database would compare equal to it.

        Args:
            alias: The alias as the caller spelled it.
            known: Alias names the policy spells out.
        """
        if alias in self.aliases or not self.folding:
            return alias
        wanted = fold(alias)
        for candidate in (*self.aliases, *known):
            if fold(candidate) == wanted:
                return candidate
        return alias

    @property
    def folding(self) -> bool:
        """Whether the backend compares names case- and accent-insensitively."""
        return self._session.get_bind().dialect.name in FOLDING_DIALECTS


def lock_model(session: Session, store: GovernedStoreBase, name: str) -> LockedModel | None:
    """Take the registered model's row lock for the rest of the write transaction.

    Args:
        session: MLflow's write session, before MLflow has read anything in it.
        store: The governed store.
        name: The model name as the caller spelled it.

    Returns:
        The locked model, or None when no such model exists (MLflow then refuses the
        write with its own error).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(_SQLITE_WRITE_LOCK)
        query = store._get_query(session, SqlRegisteredModel)
    else:
        query = store._get_query(session, SqlRegisteredModel).with_for_update()
    row = query.filter(SqlRegisteredModel.name == name).first()
    return None if row is None else LockedModel(session, store, row)


__all__ = ["FOLDING_DIALECTS", "LockedModel", "VersionState", "fold", "lock_model"]
