"""A database failure becomes one retryable MLflow error, written for people.

Real failures, not built ones: a connection refused (nothing listens on the port), a
connection terminated mid-transaction, and MariaDB's deadlock code.
"""

from __future__ import annotations

import pymysql
import pytest
import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

from mlflow_governance.exceptions import AuditWriteError
from mlflow_governance.mlflow_errors import database_cause, governance_cause, to_mlflow
from tests.databases import SERVERS
from tests.server.conftest import postgres_or_skip
from tests.servers import free_port

RETRYABLE = "TEMPORARILY_UNAVAILABLE"


def _refused(driver: str) -> sa.exc.OperationalError:
    engine = sa.create_engine(
        f"{driver}://nobody@127.0.0.1:{free_port()}/x", poolclass=sa.pool.NullPool
    )
    with pytest.raises(sa.exc.OperationalError) as raised, engine.connect():
        pass
    return raised.value


def _terminated() -> sa.exc.OperationalError:
    postgres_or_skip()
    admin = SERVERS["postgresql"].admin_engine()
    with admin.connect() as victim:
        pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with admin.connect() as killer:
            assert killer.execute(
                sa.text("SELECT pg_terminate_backend(:p, 30000)"), {"p": pid}
            ).scalar()
        with pytest.raises(sa.exc.OperationalError) as raised:
            victim.execute(sa.text("SELECT 1"))
    return raised.value


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _refused("postgresql+psycopg"), id="postgres-refused"),
        pytest.param(lambda: _refused("mysql+pymysql"), id="mysql-refused"),
        pytest.param(_terminated, id="postgres-terminated", marks=pytest.mark.postgres),
    ],
)
def test_a_lost_database_is_a_retryable_503_without_sql_or_address(make) -> None:
    error = make()
    converted = to_mlflow(error)
    assert converted.error_code == RETRYABLE
    assert converted.get_http_status_code() == 503
    assert converted.__cause__ is error
    message = converted.message
    assert "retry" in message and "audit row" in message
    for leak in ("SELECT", "127.0.0.1", "sqlalche.me", "[SQL"):
        assert leak not in message, message


def test_a_deadlock_says_nothing_was_applied() -> None:
    deadlock = sa.exc.OperationalError(
        "UPDATE t", {}, pymysql.err.OperationalError(1213, "Deadlock found")
    )
    converted = to_mlflow(deadlock)
    assert converted.error_code == RETRYABLE
    assert "OperationalError 1213" in converted.message
    assert "nothing of it was applied" in converted.message


def test_causes_are_found_under_mlflows_own_wrapping() -> None:
    lost = _refused("postgresql+psycopg")
    # How MLflow's managed session reports it: its own exception, raised from the error.
    try:
        try:
            raise lost
        except sa.exc.OperationalError as exc:
            raise MlflowException(str(exc), error_code=INTERNAL_ERROR) from exc
    except MlflowException as wrapped:
        assert database_cause(wrapped) is lost
        assert governance_cause(wrapped) is None
    audit = AuditWriteError("the audit row could not be written")
    audit.__cause__ = lost
    assert governance_cause(audit) is audit
    assert database_cause(audit) is lost
    assert to_mlflow(audit).error_code == RETRYABLE
    assert database_cause(ValueError("x")) is None
