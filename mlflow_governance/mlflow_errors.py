"""The one place where plugin errors become ``MlflowException``.

REST clients then get the HTTP status MLflow maps each code to (403, 400, 404) and a
message written for people, never a raw database error.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode

from mlflow_governance.exceptions import GovernanceError


def to_mlflow(error: GovernanceError) -> MlflowException:
    """Convert a plugin error into the MLflow exception the stock client understands.

    Args:
        error: The plugin error.

    Returns:
        An ``MlflowException`` with the error's code and message, chained to it.
    """
    converted = MlflowException(error.message, error_code=ErrorCode.Value(error.error_code))
    converted.__cause__ = error
    return converted


def governance_cause(exc: BaseException) -> GovernanceError | None:
    """Find a plugin error MLflow wrapped on its way out of a session (e.g. at commit).

    Args:
        exc: The exception raised by MLflow code.

    Returns:
        The plugin error in its cause chain, or None.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, GovernanceError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
