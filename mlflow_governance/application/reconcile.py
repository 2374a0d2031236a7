"""Reconciling the registry with its audit log, for holders of ``audit:read``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from mlflow_governance.application._core import ServiceCore
from mlflow_governance.identity import Identity


@contextmanager
def snapshot(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read-only connection that sees one snapshot of the database until it closes.

    The log and MLflow's tables are read by several statements; without one snapshot, a
    write committed between them would look like a change the log missed (or a logged
    change the registry lost).
    """
    with engine.connect() as opened:
        if engine.dialect.name == "sqlite":
            # pysqlite opens no transaction for a SELECT, so each statement would see the
            # database as it is then. An explicit BEGIN holds one read snapshot (it also
            # holds SQLite's shared lock: writers wait until the reconcile ends, unless
            # the database is in WAL mode).
            connection = opened
            connection.exec_driver_sql("BEGIN")
        else:
            connection = opened.execution_options(isolation_level="REPEATABLE READ")
            connection.begin()
        try:
            yield connection
        finally:
            connection.rollback()


class ReconcileActions(ServiceCore):
    """``audit reconcile``: the registry against what the audit log says it is."""

    def audit_reconcile(self, identity: Identity) -> dict[str, Any]:
        """Every difference between the registry's current state and the log's replay.

        Needs ``audit:read`` on every model: the answer speaks of the whole registry. On a
        workspace-aware server, the caller's workspace is reconciled.

        Returns:
            ``{"ok", "rows", "head_id", "models", "versions", "aliases",
            "differences"}`` (see :class:`~mlflow_governance.audit.reconcile.Report`).

        Raises:
            PermissionDenied: No ``audit:read`` on every model (the refusal is audited).
            Conflict: The log cannot be read (a damaged row: run ``audit verify``).
        """
        from mlflow_governance.audit.reconcile import reconcile

        self.require(identity, "audit:read", None, "reconcile_audit")
        with snapshot(self.store.engine) as connection:
            report = reconcile(connection, self.store.active_workspace())
        return report.to_dict()
