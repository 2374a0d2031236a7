"""Alembic environment for the plugin's own tables (run programmatically only)."""

from __future__ import annotations

from alembic import context

from mlflow_governance.audit.tables import metadata
from mlflow_governance.db import VERSION_TABLE
from mlflow_governance.workflow import tables as _workflow_tables  # noqa: F401  (registers tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
