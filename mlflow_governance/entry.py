"""The ``mlflow.model_registry_store`` entry point.

MLflow loads every registered entry point whenever it builds any registry store, so this
module stays tiny and imports the governed store only when a ``governed+`` URI is used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mlflow_governance import config
from mlflow_governance.exceptions import ConfigurationError, GovernanceError

if TYPE_CHECKING:
    from mlflow_governance.store import GovernedStore


def build_store(store_uri: str, tracking_uri: str | None = None) -> GovernedStore:
    """Build the governed store for any ``governed+<database>`` registry URI.

    Reads the server's read-replica setting as MLflow's own builder does, and picks the
    workspace-aware variant under ``--enable-workspaces``.

    Args:
        store_uri: The registry URI, e.g. ``governed+sqlite:///registry.db``.
        tracking_uri: The tracking URI MLflow resolved, if any.

    Returns:
        The governed store.

    Raises:
        MlflowException: The URI is unsupported, the database unreachable, or its
            governance tables come from a newer plugin release.
    """
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
    from mlflow.server.constants import READ_REPLICA_BACKEND_STORE_URI_ENV_VAR

    from mlflow_governance.mlflow_errors import to_mlflow
    from mlflow_governance.store import GovernedStore, GovernedWorkspaceStore

    try:
        db_uri = config.database_uri(store_uri)
        read_db_uri = config.plain_uri(os.environ.get(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR))
        probe(db_uri)
        store_cls = GovernedWorkspaceStore if MLFLOW_ENABLE_WORKSPACES.get() else GovernedStore
        return store_cls(db_uri, read_db_uri=read_db_uri, tracking_uri=tracking_uri)
    except GovernanceError as exc:
        raise to_mlflow(exc) from None


def probe(db_uri: str) -> None:
    """Fail fast with a clear message when a database server cannot be reached.

    MLflow's engine factory retries with growing sleeps for over a minute and then
    surfaces the driver's raw error; one plain attempt first gives a usable message.

    Args:
        db_uri: The plain SQLAlchemy URL.

    Raises:
        ConfigurationError: The server cannot be reached or its driver is missing.
    """
    if db_uri.startswith("sqlite"):
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(db_uri, poolclass=sqlalchemy.pool.NullPool)
    except ImportError as exc:
        raise ConfigurationError(
            f"The database driver for {config.redact(db_uri)} is not installed ({exc}). "
            + _driver_hint(db_uri)
        ) from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:300]
        raise ConfigurationError(
            f"Cannot reach the registry database at {config.redact(db_uri)}: {reason}. "
            "Check the host, port, credentials and that the database exists."
        ) from None
    finally:
        engine.dispose()


def _driver_hint(db_uri: str) -> str:
    scheme = db_uri.split(":", 1)[0]
    if scheme == "mysql":
        # A bare mysql:// means the MySQLdb driver, which the [mysql] extra does not install.
        return (
            "SQLAlchemy's default MySQL driver is MySQLdb: pip install mysqlclient, or use "
            "governed+mysql+pymysql://... with pip install 'mlflow-governance[mysql]'."
        )
    if scheme.startswith("mysql"):
        return "Install it: pip install 'mlflow-governance[mysql]'."
    return "Install it: pip install 'mlflow-governance[postgres]'."
