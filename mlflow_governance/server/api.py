"""The governance REST API under ``/api/2.0/mlflow-governance/``: an adapter over the service.

Each route parses its input, calls one method of
:class:`~mlflow_governance.application.GovernanceService` as the authenticated caller and
sends back what it returns. Shapes are the CLI's ``--json`` shapes (a JSON array for lists,
an object for one item); errors are MLflow's (``{"error_code", "message"}`` with its HTTP
status). The routes are described by ``openapi.json``
(:mod:`mlflow_governance.server.openapi`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy.exc
from flask import Blueprint, Response, request
from mlflow.exceptions import MlflowException
from werkzeug.exceptions import RequestEntityTooLarge

from mlflow_governance.application import export_text
from mlflow_governance.exceptions import GovernanceError, InvalidRequest
from mlflow_governance.identity import Identity, current_identity
from mlflow_governance.server._http import exception_response, limit_body, too_large_response
from mlflow_governance.server.bounds import wire_checkpoint
from mlflow_governance.server.context import API_PREFIX, governance, service, static_prefixed

blueprint = Blueprint("mlflow_governance_api", __name__)

# For the whole app: a body above the limit on our routes or MLflow's registry routes
# (see ``_http.limit_body``) gets MLflow's JSON error, not werkzeug's HTML page.
blueprint.app_errorhandler(RequestEntityTooLarge)(too_large_response)

F = TypeVar("F", bound=Callable[..., Any])


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def _me() -> Identity:
    return current_identity()


def _body() -> dict[str, Any]:
    if not request.get_data(cache=True):
        return {}
    try:
        data = json.loads(request.get_data(cache=True))
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        # JSON may escape half a UTF-16 pair ("\ud800"), which no database driver encodes.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            "The request body holds text that is not valid Unicode (an unpaired surrogate "
            "escape such as \\ud800); send UTF-8 text."
        ) from None
    return data


def _mlflow_errors(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        limit_body()
        try:
            return view(*args, **kwargs)
        except (GovernanceError, MlflowException, sqlalchemy.exc.OperationalError) as exc:
            return exception_response(exc)
        except RequestEntityTooLarge as exc:
            return too_large_response(exc)

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------------- requests


@blueprint.get("/requests")
@_mlflow_errors
def list_requests() -> Response:
    """Promotion requests, newest first; ``?state=`` and ``?model=`` filter."""
    args = request.args
    return _json(service().list_requests(_me(), args.get("state"), args.get("model")))


@blueprint.post("/requests")
@_mlflow_errors
def create_request() -> Response:
    """Open (or reuse) a request: ``{"model", "version", "target", "comment"}``."""
    body = _body()
    data = service().open_request(
        _me(), body.get("model"), body.get("version"), body.get("target"), body.get("comment")
    )
    return _json(data, status=201)


# Ids are taken as text and bounded by the service: Flask's int converter accepts any
# number of digits, and a number no column holds would reach the database (HTTP 500).
@blueprint.get("/requests/<request_id>")
@_mlflow_errors
def get_request(request_id: str) -> Response:
    """One request with its approvals and what its gate still needs."""
    return _json(service().get_request(_me(), request_id))


@blueprint.post("/requests/<request_id>/<any(approve, reject, cancel):action>")
@_mlflow_errors
def vote(request_id: str, action: str) -> Response:
    """Approve, reject or cancel a request: ``{"comment"}``."""
    return _json(service().vote(_me(), request_id, action, _body().get("comment")))


# ---------------------------------------------------------------------- moves


@blueprint.get("/check")
@_mlflow_errors
def check() -> Response:
    """A gate's checks on a version: ``?model=&version=&gate=``."""
    args = request.args
    return _json(service().check(_me(), args.get("model"), args.get("version"), args.get("gate")))


@blueprint.post("/promote")
@_mlflow_errors
def promote() -> Response:
    """Apply a move, or open (or reuse) its request: ``{"model", "version", "to", "comment"}``.

    Never waits: a caller that wants to wait polls the request.
    """
    body = _body()
    data = service().promote(
        _me(), body.get("model"), body.get("version"), body.get("to"), body.get("comment")
    )
    return _json(data)


@blueprint.post("/rollback")
@_mlflow_errors
def rollback() -> Response:
    """Restore the previous holder: ``{"model", "stage"|"alias", "comment"}``."""
    body = _body()
    data = service().rollback(
        _me(), body.get("model"), body.get("stage"), body.get("alias"), body.get("comment")
    )
    return _json(data)


# ---------------------------------------------------------------------- audit


@blueprint.get("/audit")
@_mlflow_errors
def audit() -> Response:
    """Audit rows, filtered like ``mlflow-governance audit list`` (needs ``audit:read``)."""
    return _json(service().audit_list(_me(), request.args.to_dict()))


@blueprint.get("/audit/export")
@_mlflow_errors
def audit_export() -> Response:
    """Every matching audit row; ``?format=jsonl|csv`` gives the export file's text."""
    args = request.args.to_dict()
    fmt = args.pop("format", None)
    rows = service().audit_export(_me(), args)
    if not fmt:
        return _json(rows)
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(export_text(rows, fmt), mimetype=mimetype)


@blueprint.post("/audit/verify")
@_mlflow_errors
def audit_verify() -> Response:
    """Verify the hash chain, against ``{"checkpoint": {...}}`` when given."""
    checkpoint = wire_checkpoint(_body().get("checkpoint"))
    return _json(service().audit_verify(_me(), checkpoint))


@blueprint.post("/audit/checkpoint")
@_mlflow_errors
def audit_checkpoint() -> Response:
    """The chain head (row count and hash) to keep outside the database."""
    return _json(service().audit_checkpoint(_me()))


@blueprint.get("/audit/reconcile")
@_mlflow_errors
def audit_reconcile() -> Response:
    """The registry against what the audit log says it is (needs ``audit:read``)."""
    return _json(service().audit_reconcile(_me()))


@blueprint.post("/audit/retain")
@_mlflow_errors
def audit_retain() -> Response:
    """Archive rows older than ``{"before"}`` to ``{"archive"}``, then cut them
    (needs ``policy:admin``)."""
    body = _body()
    return _json(service().audit_retain(_me(), body.get("before"), body.get("archive")))


@blueprint.get("/history")
@_mlflow_errors
def history() -> Response:
    """Stage and alias history of ``?model=``, or its holders ``?at=`` a time."""
    return _json(service().history(_me(), request.args.get("model"), request.args.get("at")))


# ---------------------------------------------------------------------- events


@blueprint.get("/events")
@_mlflow_errors
def events() -> Response:
    """Outbox events, newest first: ``?state=pending|delivered|dead&limit=``."""
    args = request.args
    return _json(service().events_list(_me(), args.get("state"), args.get("limit")))


@blueprint.post("/events/retry")
@_mlflow_errors
def events_retry() -> Response:
    """Make one event (``{"event": ID}``) or every dead one (``{"dead": true}``) due again."""
    body = _body()
    return _json(service().events_retry(_me(), body.get("event"), body.get("dead") is True))


@blueprint.get("/gitops/render")
@_mlflow_errors
def gitops_render() -> Response:
    """Deployment manifests of what ``?model=`` holds at ``?alias=`` or ``?stage=``."""
    args = request.args
    data = service().render_release(
        _me(),
        args.get("model"),
        alias=args.get("alias"),
        stage=args.get("stage"),
        image=args.get("image"),
    )
    return _json(data)


# ---------------------------------------------------------------------- policy and identity


@blueprint.get("/policy")
@_mlflow_errors
def policy() -> Response:
    """The policy in force and where it comes from."""
    return _json(service().policy_show(_me()))


@blueprint.post("/policy")
@_mlflow_errors
def policy_apply() -> Response:
    """Apply a policy: ``{"policy": YAML text, "source": file name}`` (needs policy:admin)."""
    body = _body()
    return _json(service().policy_apply(_me(), body.get("policy"), body.get("source")))


@blueprint.get("/policy/explain")
@_mlflow_errors
def policy_explain() -> Response:
    """What ``?user=`` may do on ``?model=`` (``?group=`` repeated for proxy groups)."""
    args = request.args
    data = service().policy_explain(
        _me(), args.get("user"), args.get("model"), args.getlist("group")
    )
    return _json(data)


@blueprint.get("/whoami")
@_mlflow_errors
def whoami() -> Response:
    """The authenticated caller."""
    me = _me()
    data = service().whoami(me)
    data.update(
        auth=governance().auth_mode,
        client_address=me.client_address,
        user_agent=me.user_agent,
    )
    return _json(data)


@blueprint.get("/openapi.json")
@_mlflow_errors
def openapi() -> Response:
    """The OpenAPI 3.1 description of these routes."""
    from mlflow_governance.server.openapi import build_spec

    return _json(build_spec(static_prefixed(API_PREFIX), governance().auth_mode))
