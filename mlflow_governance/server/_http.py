"""Responses in MLflow's REST error format: JSON ``{"error_code", "message"}``.

MLflow's handlers answer errors with the error code's HTTP status (``PERMISSION_DENIED``
is 403, ``RESOURCE_DOES_NOT_EXIST`` 404, ``INVALID_PARAMETER_VALUE`` 400, ``UNAUTHENTICATED``
401) and this body; the governance routes do the same so one client handles both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy.exc
from flask import Response, current_app, request
from mlflow.exceptions import MlflowException
from werkzeug.exceptions import RequestEntityTooLarge

from mlflow_governance.exceptions import GovernanceError
from mlflow_governance.mlflow_errors import to_mlflow
from mlflow_governance.server.context import EXTENSION_KEY
from mlflow_governance.server.settings import DEFAULT_MAX_BODY_BYTES, ENV_MAX_BODY_BYTES

#: What a browser needs to show its login prompt for basic-auth.
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="mlflow"'}

STATUS_BY_CODE = {
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "INTERNAL_ERROR": 500,
}

#: The status of a body above the limit ("Content Too Large", RFC 9110).
TOO_LARGE = 413


def body_limit() -> int:
    """The largest request body this server's governed routes accept, in bytes."""
    settings = getattr(current_app.extensions.get(EXTENSION_KEY), "settings", None)
    limit = getattr(settings, "max_body_bytes", None)
    return limit if isinstance(limit, int) else DEFAULT_MAX_BODY_BYTES


def limit_body() -> None:
    """Hold the current request's body to :func:`body_limit` before anything reads it.

    Werkzeug then refuses a larger ``Content-Length`` at once, and stops reading a body
    without one at the limit, by raising :class:`RequestEntityTooLarge`, which
    :func:`too_large_response` answers. Nothing has been parsed or written by then.
    """
    request.max_content_length = body_limit()


def too_large_response(_exc: RequestEntityTooLarge | None = None) -> Response:
    """HTTP 413 with MLflow's JSON error body, for a body above :func:`body_limit`."""
    limit = body_limit()
    size = request.content_length
    sent = f"{size:,} bytes" if size is not None else "more than that"
    return error_response(
        "INVALID_PARAMETER_VALUE",
        f"The request body is too large: this server accepts at most {limit:,} bytes "
        f"and was sent {sent}. Nothing was read or changed. Send less (shorter "
        f"descriptions, fewer tags), or ask the server's administrator to raise "
        f"{ENV_MAX_BODY_BYTES}.",
        TOO_LARGE,
    )


def request_json() -> Any:
    """The current request's JSON body as MLflow's handlers read it, or None.

    MLflow parses the body whatever its ``Content-Type`` says and decodes it a second time
    when an old client sent it double-encoded; a check on the body must see what the
    handler will see, so it reads the body the same way, under :func:`limit_body`.

    Raises:
        RequestEntityTooLarge: The body is above the limit (answered with HTTP 413).
    """
    limit_body()
    data = request.get_json(force=True, silent=True)
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    return data


def error_body(error_code: str, message: str) -> bytes:
    """The JSON body of an error."""
    return json.dumps({"error_code": error_code, "message": message}).encode("utf-8")


def error_response(
    error_code: str,
    message: str,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON error response.

    Args:
        error_code: An MLflow error code name, e.g. ``PERMISSION_DENIED``.
        message: What happened, for people.
        status: The HTTP status; by default the one MLflow uses for the code.
        headers: Extra headers (e.g. the basic-auth challenge).
    """
    response = Response(error_body(error_code, message), mimetype="application/json")
    response.status_code = status or STATUS_BY_CODE.get(error_code, 500)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def exception_response(exc: Exception) -> Response:
    """Turn a plugin or MLflow error into MLflow's error response.

    Args:
        exc: A :class:`GovernanceError` or an ``MlflowException``.
    """
    converted = (
        to_mlflow(exc)
        if isinstance(exc, GovernanceError | sqlalchemy.exc.OperationalError)
        else exc
    )
    if not isinstance(converted, MlflowException):
        raise TypeError(f"not an MLflow or governance error: {exc!r}")
    response = Response(converted.serialize_as_json(), mimetype="application/json")
    # A Conflict carries RESOURCE_CONFLICT, which MLflow's own table maps to 409.
    response.status_code = converted.get_http_status_code()
    return response
