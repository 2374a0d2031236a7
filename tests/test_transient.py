"""Which database errors are run again, and that a transient one is survived."""

from __future__ import annotations

import pymysql
import pytest
import sqlalchemy.exc

from mlflow_governance.transient import ATTEMPTS, is_transient, run_again_if_transient


def _mysql(code: int) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, pymysql.err.OperationalError(code, "x"))


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _pg(state: str) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, _PgError(state))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_mysql(1213), True),  # deadlock
        (_mysql(1205), True),  # lock wait timeout
        (_mysql(2003), False),  # cannot connect: not ours to retry here
        (_pg("40P01"), True),
        (_pg("40001"), True),
        (_pg("23505"), False),  # unique violation
        (ValueError("x"), False),
    ],
)
def test_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_deadlock_victim_is_run_again() -> None:
    calls = []

    def once_deadlocked() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise _mysql(1213)
        return "done"

    assert run_again_if_transient(once_deadlocked) == "done"
    assert len(calls) == 2


def test_attempts_are_bounded_and_other_errors_pass_at_once() -> None:
    calls = []

    def always() -> None:
        calls.append(1)
        raise _pg("40P01")

    with pytest.raises(sqlalchemy.exc.OperationalError):
        run_again_if_transient(always)
    assert len(calls) == ATTEMPTS
    calls.clear()

    def broken() -> None:
        calls.append(1)
        raise _mysql(2003)

    with pytest.raises(sqlalchemy.exc.OperationalError):
        run_again_if_transient(broken)
    assert len(calls) == 1


def test_a_deadlock_under_mlflows_own_error_is_transient() -> None:
    from mlflow.exceptions import MlflowException

    try:
        try:
            raise _pg("40P01")
        except sqlalchemy.exc.OperationalError as exc:
            raise MlflowException("database error", error_code="TEMPORARILY_UNAVAILABLE") from exc
    except MlflowException as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(MlflowException("no database error under it"))
