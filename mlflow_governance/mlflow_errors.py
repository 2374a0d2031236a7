"""The one place where plugin errors become ``MlflowException``.

REST clients then get the HTTP status MLflow maps each code to (403, 400, 404, 503) and a
message written for people, never a raw database error.

A database that cannot be reached, or a connection lost in the middle of a transaction,
is not the caller's fault and usually lasts seconds: it becomes
``TEMPORARILY_UNAVAILABLE`` (HTTP 503), which clients retry, with a message that says so
and neither the SQL nor the server's address.
"""

from __future__ import annotations

import sqlalchemy.exc
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode

from mlflow_governance.exceptions import GovernanceError
from mlflow_governance.transient import is_transient

#: The code of every database error converted here: MLflow answers it with HTTP 503.
DATABASE_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"


def to_mlflow(error: GovernanceError | sqlalchemy.exc.OperationalError) -> MlflowException:
    """Convert a plugin error, or a database that failed under it, into an MLflow exception.

    Args:
        error: The plugin error, or SQLAlchemy's ``OperationalError`` (the database is
            unreachable, the connection was lost, or a deadlock ended the transaction).

    Returns:
        An ``MlflowException`` with the error's code and message, chained to it.
    """
    if isinstance(error, sqlalchemy.exc.OperationalError):
        converted = MlflowException(
            _database_message(error), error_code=ErrorCode.Value(DATABASE_UNAVAILABLE)
        )
    else:
        converted = MlflowException(error.message, error_code=ErrorCode.Value(error.error_code))
    converted.__cause__ = error
    return converted


def _database_message(error: sqlalchemy.exc.OperationalError) -> str:
    # The driver's class (and MySQL's numeric code) is enough to find the cause in the
    # server's log; its text names hosts, ports and SQL, which callers have no use for.
    orig = error.orig if error.orig is not None else error
    code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
    cause = f"{type(orig).__name__} {code}" if code is not None else type(orig).__name__
    if is_transient(error):
        return (
            f"The database ended this transaction because another one needed the same rows "
            f"({cause}); nothing of it was applied. Retry the request."
        )
    return (
        f"The registry database could not be reached or the connection to it was lost "
        f"({cause}). A write is applied whole, with its audit row, or not at all: retry "
        "the request in a few seconds, and if this persists, check that the database is "
        "up and reachable from the MLflow server."
    )


def governance_cause(exc: BaseException) -> GovernanceError | None:
    """Find a plugin error MLflow wrapped on its way out of a session (e.g. at commit).

    Args:
        exc: The exception raised by MLflow code.

    Returns:
        The plugin error in its cause chain, or None.
    """
    found = _in_chain(exc, GovernanceError)
    return found if isinstance(found, GovernanceError) else None


def database_cause(exc: BaseException) -> sqlalchemy.exc.OperationalError | None:
    """Find the database failure under an error (MLflow wraps it in its own exception).

    Args:
        exc: An exception, e.g. the ``MlflowException`` MLflow's session raised.

    Returns:
        SQLAlchemy's ``OperationalError`` in its cause chain, or None.
    """
    found = _in_chain(exc, sqlalchemy.exc.OperationalError)
    return found if isinstance(found, sqlalchemy.exc.OperationalError) else None


def _in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
