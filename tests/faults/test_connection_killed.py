"""A database connection terminated in the middle of a governed write's transaction.

A listener on the store's engine waits for the chosen statement of one governed write
(the audit row's INSERT, or MLflow's own registry INSERT/UPDATE), has a second connection
terminate this one (``pg_terminate_backend`` / MariaDB ``KILL``), then lets the statement
run on the dead connection. The caller must get one clear, retryable ``MlflowException``,
the database must hold nothing of the write (neither the change nor its audit row), and
the next write on the same store must work: the pool throws the dead connection away.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow.exceptions import MlflowException

from mlflow_governance.identity import Identity, acting_as
from mlflow_governance.store import GovernedStore
from tests.faults.invariants import (
    Outcome,
    assert_nothing_lost,
    audit_rows,
    registry_state,
)
from tests.faults.policy import FAULTS_POLICY

#: What a connection lost mid-write must look like to the caller: MLflow's code for "try
#: again", which its REST layer answers with HTTP 503.
RETRYABLE = "TEMPORARILY_UNAVAILABLE"


@dataclass(frozen=True)
class Case:
    """A governed write and the statements of its transaction to kill it at."""

    action: str
    write: Callable[[GovernedStore], Any]
    outcome: Outcome
    registry_statement: str  # a regular expression on the SQL text


_AUDIT_INSERT = r"insert\s+into\s+[`\"]?governance_audit_log\b"

CASES = {
    "create_model_version": Case(
        "create_model_version",
        lambda store: store.create_model_version("m", "s3://bucket/m/3"),
        Outcome("create_model_version", "m", 3),
        r"insert\s+into\s+[`\"]?model_versions\b",
    ),
    "transition_model_version_stage": Case(
        "transition_model_version_stage",
        lambda store: store.transition_model_version_stage("m", 2, "Staging", True),
        Outcome("transition_model_version_stage", "m", 2, stage="Staging"),
        r"update\s+[`\"]?model_versions\b",
    ),
    "set_registered_model_alias": Case(
        "set_registered_model_alias",
        lambda store: store.set_registered_model_alias("m", "candidate", 2),
        Outcome("set_registered_model_alias", "m", 2, alias="candidate"),
        r"(insert\s+into|update)\s+[`\"]?registered_model_aliases\b",
    ),
}

BACKENDS = [
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


class ConnectionKiller:
    """Kill the connection about to run the first statement matching a pattern.

    The victim's server-side id is read on the victim connection itself just before;
    the kill runs on a connection of its own and returns once the server has ended the
    victim, so the statement then always meets a dead connection.
    """

    def __init__(self, admin_url: str, backend: str, pattern: str, skip: int = 0) -> None:
        self.backend = backend
        self.skip = skip
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self.admin = sa.create_engine(
            admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )
        self.killed: list[tuple[int, str]] = []

    def before_cursor_execute(
        self,
        conn: sa.Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if self.killed or not self.pattern.search(statement):
            return
        if self.skip:
            self.skip -= 1
            return
        victim = self._server_id(cursor.connection)
        self._kill(victim)
        self.killed.append((victim, " ".join(statement.split())[:60]))

    def _server_id(self, dbapi_connection: Any) -> int:
        query = (
            "SELECT pg_backend_pid()" if self.backend == "postgresql" else "SELECT CONNECTION_ID()"
        )
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(query)
            return int(cursor.fetchone()[0])
        finally:
            cursor.close()

    def _kill(self, victim: int) -> None:
        with self.admin.connect() as conn:
            if self.backend == "postgresql":
                # The timeout form waits until the backend has exited (PostgreSQL 14+).
                ended = conn.execute(
                    sa.text("SELECT pg_terminate_backend(:pid, 30000)"), {"pid": victim}
                ).scalar()
                assert ended, f"backend {victim} did not end within 30 s"
            else:
                # The victim waits for its next statement; KILL shuts its socket before
                # returning, so that statement meets a closed connection.
                conn.exec_driver_sql(f"KILL CONNECTION {int(victim)}")

    def dispose(self) -> None:
        self.admin.dispose()


@contextmanager
def killing(
    store: GovernedStore, admin_url: str, backend: str, pattern: str, skip: int = 0
) -> Iterator[ConnectionKiller]:
    """Arm a :class:`ConnectionKiller` on the store's engine for the block."""
    killer = ConnectionKiller(admin_url, backend, pattern, skip)
    sa.event.listen(store.engine, "before_cursor_execute", killer.before_cursor_execute)
    try:
        yield killer
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", killer.before_cursor_execute)
        killer.dispose()


def _prepare(store: GovernedStore) -> None:
    """Model ``m`` with versions 1 and 2; version 1 in Staging holding ``candidate``."""
    store.create_registered_model("m")
    store.create_model_version("m", "s3://bucket/m/1")
    store.create_model_version("m", "s3://bucket/m/2")
    store.transition_model_version_stage("m", 1, "Staging", False)
    store.set_registered_model_alias("m", "candidate", 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("at", ["audit", "registry"])
@pytest.mark.parametrize("action", sorted(CASES))
def test_a_connection_killed_mid_write_loses_nothing(
    backend: str, at: str, action: str, db_url_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[action]
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", str(FAULTS_POLICY))
    url = db_url_for(backend)
    store = GovernedStore(url)
    with acting_as(Identity("ann", "asserted")):
        _prepare(store)
        rows_before = audit_rows(store.engine)
        state_before = registry_state(store.engine)

        pattern = _AUDIT_INSERT if at == "audit" else case.registry_statement
        with killing(store, url, backend, pattern) as killer, pytest.raises(Exception) as raised:
            case.write(store)

        assert killer.killed, f"no statement matched {pattern!r}: the write never reached it"
        error = raised.value
        assert isinstance(error, MlflowException), (
            f"{action} with its connection killed at {killer.killed[0][1]!r} raised "
            f"{type(error).__module__}.{type(error).__name__}, not an MlflowException: {error}"
        )
        assert error.error_code == RETRYABLE, (
            f"{action} with its connection killed at {killer.killed[0][1]!r} answered "
            f"{error.error_code}: {error.message}"
        )
        # Nothing half-applied: neither the change nor an audit row of it.
        assert registry_state(store.engine) == state_before
        assert audit_rows(store.engine) == rows_before

        # The pool recovers: the same write, on the same store, now goes through.
        case.write(store)
    assert_nothing_lost(url, [case.outcome, Outcome(case.action, "m", result=RETRYABLE)])
    assert registry_state(store.engine) != state_before


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("skip", [0, 1], ids=["request-row", "deny-row"])
def test_a_connection_killed_while_a_refusal_is_audited(
    backend: str, skip: int, db_url_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A move into Production is held by the gate: the store opens a request (its own
    transaction, audit row first) and then writes the deny row (another one). Killing
    either must give a retryable error, never a refusal without its row nor a crash."""
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", str(FAULTS_POLICY))
    url = db_url_for(backend)
    store = GovernedStore(url)
    with acting_as(Identity("ann", "asserted")):
        _prepare(store)
        state_before = registry_state(store.engine)
        with (
            killing(store, url, backend, _AUDIT_INSERT, skip=skip) as killer,
            pytest.raises(Exception) as raised,
        ):
            store.transition_model_version_stage("m", 2, "Production", False)
        assert killer.killed
        # The request (when its transaction committed) is on record; the registry is not
        # touched either way.
        assert registry_state(store.engine) == state_before
        assert_nothing_lost(url)
        with pytest.raises(MlflowException) as refused:
            store.transition_model_version_stage("m", 2, "Production", False)
        assert refused.value.error_code == "PERMISSION_DENIED"
        denies = [r for r in audit_rows(store.engine) if r["decision"] == "deny"]
        assert len(denies) == 1 and denies[0]["version"] == 2
        error = raised.value
        assert isinstance(error, MlflowException), f"{type(error).__name__}: {error}"
        assert error.error_code == RETRYABLE, error.message
