"""Schema management: Alembic migrations with their own version table.

MLflow's own migrations keep their revision in ``alembic_version``; ours live in
``governance_alembic_version`` so the two histories never collide in a shared database.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mlflow_governance.exceptions import ConfigurationError

VERSION_TABLE = "governance_alembic_version"
#: The newest revision this release ships; bump with every new migration.
HEAD_REVISION = "0008"
#: Every revision this release knows, oldest first.
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008")

_MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def current_revision(connection: sa.Connection) -> str | None:
    """Read the applied revision, or None when the plugin's tables were never created.

    Args:
        connection: An open connection.

    Returns:
        The revision id or None.
    """
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``.

    Args:
        engine: The registry database engine.
        revision: The target revision.

    Raises:
        ConfigurationError: The database carries a revision newer than this release.
    """
    from alembic import command
    from alembic.config import Config

    with engine.begin() as connection:
        _refuse_newer(current_revision(connection))
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def restore_chain_head(engine: sa.Engine) -> bool:
    """Re-create a deleted audit chain head from the newest audit row (``db upgrade``).

    Returns:
        True when it was missing and has been restored.
    """
    from mlflow_governance.audit.tables import restore_head

    with engine.begin() as connection:
        return restore_head(connection)


def ensure_schema(engine: sa.Engine) -> None:
    """Create or migrate the plugin's tables when they are behind; cheap when they are not.

    One SELECT on the common path: migrations run only on a fresh or older database.

    Args:
        engine: The registry database engine.

    Raises:
        ConfigurationError: The tables come from a newer plugin version.
    """
    with engine.connect() as connection:
        revision = current_revision(connection)
    if revision == HEAD_REVISION:
        return
    _refuse_newer(revision)
    upgrade(engine)


def _refuse_newer(revision: str | None) -> None:
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise ConfigurationError(
            f"The governance tables in this database are at revision '{revision}', which this "
            f"version of mlflow-governance does not know (it knows up to '{HEAD_REVISION}'). "
            "They were created by a newer plugin release: upgrade mlflow-governance "
            "(pip install -U mlflow-governance) rather than downgrading the database."
        )
