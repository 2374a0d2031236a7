"""Registry state as the write's own transaction sees it, on rows locked for that write.

A gate that read the version's stage in one session and let the write run in another
would leave a window in which a concurrent change slips between check and write. The
governed store therefore decides inside MLflow's write session: :func:`lock_model` takes
the registered model's row lock (``SELECT ... FOR UPDATE`` on PostgreSQL and MySQL; on
SQLite, which has no row locks, the database write lock, taken by locking the audit chain
head that the write's audit row moves anyway) before MLflow reads anything, and :class:`LockedModel`
answers the gate's questions from that same transaction.

Every governed writer of a model takes the same lock first, so while a decision is being
made no other governed write can change the model's stages, aliases or versions.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlRegisteredModel,
    SqlRegisteredModelAlias,
)

from mlflow_governance.audit.writer import take_head

if TYPE_CHECKING:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy.orm import Session

#: Backends whose default collation compares names case- and accent-insensitively.
FOLDING_DIALECTS = frozenset({"mysql", "mariadb"})


def fold(name: str) -> str:
    """A name as MySQL's default collations compare it: case and accents ignored.

    Args:
        name: A model or alias name.

    Returns:
        The casefolded name without combining marks (``Fráud-X`` -> ``fraud-x``).
    """
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


class VersionState:
    """One live model version, as the locked transaction sees it.

    Args:
        row: The version's columns (``version``, ``current_stage``, ``user_id``,
            ``creation_time``, ``source``, ``storage_location``).
        load: Loads the MLflow entity (with tags) when a gate check needs it.
    """

    def __init__(self, row: Any, load: Any) -> None:
        self.row = row
        self._load = load

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
        """The MLflow ``ModelVersion`` entity (tags included), for gate checks."""
        return self._load(self.number).to_mlflow_entity()

    def tags(self) -> list[tuple[str, str]]:
        """The version's tags as ``(key, value)``."""
        return [(str(t.key), str(t.value)) for t in self._load(self.number).model_version_tags]

    @property
    def download_uri(self) -> str:
        """Where the version's files are (as MLflow's download URI resolves it)."""
        return str(self.row.storage_location or self.row.source)


class LockedModel:
    """A registered model whose row lock the current write transaction holds.

    Args:
        session: MLflow's write session for the governed call.
        store: MLflow's SQL store under the governed one (for its workspace-scoped queries).
        row: The registered model row, locked.
    """

    def __init__(
        self, session: Session, store: SqlAlchemyStore, row: Any, version: int | None = None
    ) -> None:
        self._session = session
        self._store = store
        self._versions: dict[int, VersionState | None] = {}
        if version is not None:  # read with the model's row, in the same statement
            found = row if row.version is not None else None
            self._versions[version] = None if found is None else self._state(found)
        # Read now: the write renames or deletes the row before its commit hooks run.
        #: The name as the database stores it (the canonical spelling).
        self.name = str(row.name)
        #: Creation time of the registered model in ms.
        self.created = int(row.model_created)
        #: The MLflow workspace, on workspace-aware stores; None otherwise.
        self.workspace = str(row.workspace) if store.supports_workspaces else None
        self._workspace_key = str(row.workspace)

    @property
    def connection(self) -> sa.Connection:
        """The transaction's connection, for the plugin's own tables."""
        return self._session.connection()

    def _state(self, row: Any) -> VersionState:
        return VersionState(row, self._orm_version)

    def _orm_version(self, number: int) -> Any:
        return (
            self._store._get_query(self._session, SqlModelVersion)
            .filter(SqlModelVersion.name == self.name, SqlModelVersion.version == number)
            .one()
        )

    def _version_rows(self, *conditions: Any) -> list[Any]:
        mv = SqlModelVersion.__table__.c
        query = sa.select(*_VERSION_COLUMNS).where(
            mv.workspace == self._workspace_key,
            mv.name == self.name,
            mv.current_stage != STAGE_DELETED_INTERNAL,
            *conditions,
        )
        return list(self._session.connection().execute(query))

    def version(self, number: int) -> VersionState | None:
        """A live version, or None when there is no such version."""
        if number not in self._versions:
            rows = self._version_rows(SqlModelVersion.__table__.c.version == number)
            self._versions[number] = self._state(rows[0]) if rows else None
        return self._versions[number]

    def in_stage(self, stage: str) -> list[VersionState]:
        """The live versions standing in ``stage``."""
        rows = self._version_rows(SqlModelVersion.__table__.c.current_stage == stage)
        return [self._state(row) for row in rows]

    @cached_property
    def versions(self) -> list[VersionState]:
        """Every live version of the model."""
        states = [self._state(row) for row in self._version_rows()]
        self._versions.update({state.number: state for state in states})
        return states

    @cached_property
    def aliases(self) -> dict[str, int]:
        """Alias -> version number, spelled as stored."""
        al = SqlRegisteredModelAlias.__table__.c
        rows = self._session.connection().execute(
            sa.select(al.alias, al.version).where(
                al.workspace == self._workspace_key, al.name == self.name
            )
        )
        return {str(alias): int(version) for alias, version in rows}

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


def lock_model(
    session: Session, store: SqlAlchemyStore, name: str, version: int | None = None
) -> LockedModel | None:
    """Take the registered model's row lock for the rest of the write transaction.

    One statement reads the model's row (and ``version``'s, when given) under the lock:
    the gate's usual questions cost no further round trip.

    Args:
        session: MLflow's write session, before MLflow has read anything in it.
        store: The governed store.
        name: The model name as the caller spelled it.
        version: The version the write concerns, read along with the model.

    Returns:
        The locked model, or None when no such model exists (MLflow then refuses the
        write with its own error).
    """
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "sqlite":
        take_head(session)
    statement = _LOCK_STATEMENTS[(version is not None, _lock_kind(dialect))]
    params = {"name": name, "workspace": store._get_active_workspace(), "version": version}
    row = connection.execute(statement, params).first()
    if row is None:
        return None
    return LockedModel(session, store, row, version)


def _lock_kind(dialect: str) -> str:
    return dialect if dialect in ("sqlite", "postgresql") else "mysql"


_VERSION_COLUMNS = tuple(
    SqlModelVersion.__table__.c[name]
    for name in (
        "version",
        "current_stage",
        "user_id",
        "creation_time",
        "source",
        "storage_location",
    )
)


def _lock_statement(with_version: bool, kind: str) -> sa.Select[Any]:
    rm = SqlRegisteredModel.__table__.c
    mv = SqlModelVersion.__table__.c
    columns: list[Any] = [rm.name, rm.creation_time.label("model_created"), rm.workspace]
    query = sa.select(*columns)
    if with_version:
        on = sa.and_(
            mv.workspace == rm.workspace,
            mv.name == rm.name,
            mv.version == sa.bindparam("version"),
            mv.current_stage != STAGE_DELETED_INTERNAL,
        )
        # PostgreSQL hands back, after waiting for a lock, the newest version of the rows
        # it locked only: the version's row is locked too, so the gate never decides on
        # the stage it had before the write it waited for. (That needs an inner join; a
        # missing version then reads as no row, and MLflow refuses the write itself.)
        rm_table, mv_table = SqlRegisteredModel.__table__, SqlModelVersion.__table__
        joined = (
            rm_table.join(mv_table, on)
            if kind == "postgresql"
            else rm_table.outerjoin(mv_table, on)
        )
        query = sa.select(*columns, *_VERSION_COLUMNS).select_from(joined)
    query = query.where(rm.workspace == sa.bindparam("workspace"), rm.name == sa.bindparam("name"))
    if kind == "postgresql" and with_version:
        query = query.with_for_update(of=[SqlRegisteredModel.__table__, SqlModelVersion.__table__])
    elif kind != "sqlite":
        query = query.with_for_update(of=SqlRegisteredModel.__table__)
    return query


# Built once: every governed move runs one of them, and building a statement costs more
# than running a cached one.
_LOCK_STATEMENTS = {
    (with_version, kind): _lock_statement(with_version, kind)
    for with_version in (False, True)
    for kind in ("sqlite", "postgresql", "mysql")
}

__all__ = ["FOLDING_DIALECTS", "LockedModel", "VersionState", "fold", "lock_model"]
