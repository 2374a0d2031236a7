"""The governance REST API under ``/api/2.0/mlflow-governance/``.

Shapes are the CLI's ``--json`` shapes (a JSON array for lists, an object for one item);
errors are MLflow's (``{"error_code", "message"}`` with its HTTP status). The routes are
described by ``openapi.json``, built from :mod:`mlflow_governance.server.openapi`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, request
from mlflow.exceptions import MlflowException

from mlflow_governance.exceptions import GovernanceError, InvalidRequest
from mlflow_governance.identity import current_identity
from mlflow_governance.server._http import exception_response
from mlflow_governance.server.bounds import parse_id
from mlflow_governance.server.extension import governance
from mlflow_governance.server.service import Service

blueprint = Blueprint("mlflow_governance_api", __name__)

F = TypeVar("F", bound=Callable[..., Any])


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def _service() -> Service:
    return Service(governance(), current_identity())


def _body() -> dict[str, Any]:
    if not request.get_data(cache=True):
        return {}
    try:
        data = json.loads(request.get_data(cache=True))
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


def _mlflow_errors(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except (GovernanceError, MlflowException) as exc:
            return exception_response(exc)

    return wrapper  # type: ignore[return-value]


@blueprint.get("/requests")
@_mlflow_errors
def list_requests() -> Response:
    """Promotion requests, newest first; ``?state=`` and ``?model=`` filter."""
    views = _service().requests(request.args.get("state"), request.args.get("model"))
    return _json([view.to_dict() for view in views])


@blueprint.post("/requests")
@_mlflow_errors
def create_request() -> Response:
    """Open (or reuse) a request: ``{"model", "version", "target", "comment"}``."""
    body = _body()
    view = _service().open_request(
        body.get("model"), body.get("version"), body.get("target"), body.get("comment")
    )
    return _json(view.to_dict(), status=201)


# Ids are taken as text and bounded by parse_id: Flask's int converter accepts any number
# of digits, and a number no column holds would reach the database (HTTP 500).
@blueprint.get("/requests/<request_id>")
@_mlflow_errors
def get_request(request_id: str) -> Response:
    """One request with its approvals and what its gate still needs."""
    return _json(_service().request(parse_id(request_id, "request_id")).to_dict())


@blueprint.post("/requests/<request_id>/<any(approve, reject, cancel):action>")
@_mlflow_errors
def vote(request_id: str, action: str) -> Response:
    """Approve, reject or cancel a request: ``{"comment"}``."""
    number = parse_id(request_id, "request_id")
    body = _body()
    view = _service().vote(number, action, body.get("comment"))
    return _json(view.to_dict())


@blueprint.get("/audit")
@_mlflow_errors
def audit() -> Response:
    """Audit rows, filtered like ``mlflow-governance audit list`` (needs ``audit:read``)."""
    return _json(_service().audit(request.args.to_dict()))


@blueprint.get("/history")
@_mlflow_errors
def history() -> Response:
    """Stage and alias history of ``?model=``, or its holders ``?at=`` a time."""
    return _json(_service().history(request.args.get("model"), request.args.get("at")))


@blueprint.get("/policy")
@_mlflow_errors
def policy() -> Response:
    """The policy in force and where it comes from."""
    return _json(_service().policy_document())


@blueprint.get("/whoami")
@_mlflow_errors
def whoami() -> Response:
    """The authenticated caller."""
    return _json(_service().whoami())


@blueprint.get("/openapi.json")
@_mlflow_errors
def openapi() -> Response:
    """The OpenAPI 3.1 description of these routes."""
    from mlflow_governance.server.extension import API_PREFIX, static_prefixed
    from mlflow_governance.server.openapi import build_spec

    return _json(build_spec(static_prefixed(API_PREFIX), governance().auth_mode))
