"""Real database servers for the suite: find them, create and drop the suite's databases.

PostgreSQL and MariaDB/MySQL are looked for on 127.0.0.1 (override with
``MLFLOW_GOVERNANCE_TEST_POSTGRES`` / ``MLFLOW_GOVERNANCE_TEST_MYSQL``, server URLs without
a database). When one is absent its tests skip with the reason shown; with
``MLFLOW_GOVERNANCE_REQUIRE_DATABASES=1`` (set by ``.ci/run``) they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

POSTGRES_SERVER = os.environ.get(
    "MLFLOW_GOVERNANCE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
MYSQL_SERVER = os.environ.get("MLFLOW_GOVERNANCE_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
REQUIRE = os.environ.get("MLFLOW_GOVERNANCE_REQUIRE_DATABASES") == "1"

#: MLflow's registry tables, children first so deletes respect foreign keys.
REGISTRY_TABLES = (
    "model_version_tags",
    "registered_model_aliases",
    "model_versions",
    "registered_model_tags",
    "registered_models",
    "webhook_events",
    "webhooks",
)


@dataclass(frozen=True)
class Server:
    """A database server the suite may create databases on."""

    backend: str
    url: str
    admin_db: str

    def admin_engine(self) -> sa.Engine:
        return sa.create_engine(
            f"{self.url}/{self.admin_db}", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )

    def reachable(self) -> str | None:
        """None when usable, else why not."""
        try:
            with self.admin_engine().connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            return f"{self.backend} server at {self.url} not reachable: {str(exc).splitlines()[0]}"
        return None

    @contextmanager
    def database(self, label: str) -> Iterator[str]:
        """Create a uniquely named database, yield its URL, drop it afterwards."""
        name = f"govtest_{label}_{uuid.uuid4().hex[:8]}".lower()
        engine = self.admin_engine()
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        try:
            yield f"{self.url}/{name}"
        finally:
            from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

            for key in [k for k in SqlAlchemyStore._engine_map if k.endswith(f"/{name}")]:
                SqlAlchemyStore._engine_map.pop(key).dispose()
            with engine.connect() as conn:
                if self.backend == "postgresql":
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                else:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            engine.dispose()


SERVERS = {
    "postgresql": Server("postgresql", POSTGRES_SERVER, "postgres"),
    "mysql": Server("mysql", MYSQL_SERVER, "mysql"),
}


def wipe(db_url: str) -> None:
    """Empty the registry and governance tables and reset the audit chain head."""
    from mlflow_governance.audit import anchor as _anchor  # noqa: F401  (registers the table)
    from mlflow_governance.audit.tables import GENESIS_HASH, HEAD_ROW_ID, audit_head, metadata
    from mlflow_governance.workflow import tables as _workflow  # noqa: F401  (registers tables)
    from tests.tamper import triggers_off

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    # Emptying the append-only audit log is what a DBA would do: triggers out of the way.
    with engine.begin() as conn, triggers_off(conn):
        inspector = sa.inspect(conn)
        for table in REGISTRY_TABLES:
            if inspector.has_table(table):
                conn.execute(sa.text(f"DELETE FROM {table}"))
        for table in reversed(metadata.sorted_tables):
            if inspector.has_table(table.name) and table is not audit_head:
                conn.execute(table.delete())
        conn.execute(
            audit_head.update()
            .where(audit_head.c.id == HEAD_ROW_ID)
            .values(seq=0, hash=GENESIS_HASH)
        )
    engine.dispose()
