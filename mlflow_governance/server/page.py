"""The approval page at ``/governance/``: server-rendered, no front-end build step.

Jinja2 templates with autoescaping (every user-supplied string is escaped); every form
carries the session's CSRF token and a post without it is refused. Approve and reject
share one form and its comment box: each button posts it to its own action
(``formaction``), which needs no script. The page sends a Content-Security-Policy that
allows no script at all, so even a string that escaped escaping could not run.

What the page shows is derived here from what the service returns (requests, audit rows,
history): the service stays the same for the REST API and the page.
"""

from __future__ import annotations

import functools
import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flask import (
    Blueprint,
    Response,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from mlflow.exceptions import MlflowException

from mlflow_governance.exceptions import GovernanceError
from mlflow_governance.identity import Identity, current_identity
from mlflow_governance.inputs import parse_id
from mlflow_governance.server import mlflow_permissions
from mlflow_governance.server._http import exception_response
from mlflow_governance.server.context import governance, service, static_prefixed
from mlflow_governance.server.settings import AUTH_BASIC
from mlflow_governance.workflow.request_rows import RequestView

if TYPE_CHECKING:
    from mlflow_governance.application import GovernanceService

from mlflow_governance.workflow.tables import APPLIED, OPEN_STATES, PENDING, STATES

blueprint = Blueprint(
    "mlflow_governance_page",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

CSRF_SESSION_KEY = "mlflow_governance_csrf"
CSRF_FIELD = "csrf_token"
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_AUDIT_ROWS_ON_PAGE = 200
#: The index page's filters: every request state, then all of them.
FILTERS = (*STATES, "all")
#: Significant digits a metric is shown with; the full value is in the cell's title.
_METRIC_DIGITS = 6

F = TypeVar("F", bound=Callable[..., Any])


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_SESSION_KEY] = token
    return token


def _csrf_refusal() -> Response | None:
    expected = session.get(CSRF_SESSION_KEY)
    sent = request.form.get(CSRF_FIELD, "")
    if isinstance(expected, str) and expected and hmac.compare_digest(expected, sent):
        return None
    return _page(
        "governance_error.html",
        status=403,
        title="Refused",
        message="The form's CSRF token is missing or does not match your session. "
        "Reload the page and try again.",
    )


def csrf_protected(view: F) -> F:
    """Refuse a form post whose CSRF token is missing or not the session's.

    A decorator rather than a blueprint hook: the extension serves governed routes from
    its app-level hook (see :mod:`mlflow_governance.server.auth`), which blueprint
    ``before_request`` hooks would not follow.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        refusal = _csrf_refusal()
        return refusal if refusal is not None else view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@blueprint.after_request
def _security_headers(response: Response) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@blueprint.app_template_global("gov_csrf_token")
def _template_csrf_token() -> str:
    return csrf_token()


@blueprint.app_template_filter("gov_time")
def _format_time(value: str | None) -> str:
    """``2026-11-26T06:24:08.948930Z`` as ``2026-11-26 06:24:08 UTC``."""
    if not value:
        return ""
    text = str(value).replace("T", " ").rstrip("Z")
    return f"{text.split('.', 1)[0]} UTC"


@blueprint.app_template_filter("gov_millis")
def _format_millis(value: int | None) -> str:
    """MLflow's epoch milliseconds as UTC."""
    if not value:
        return ""
    from datetime import datetime, timezone

    moment = datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@blueprint.app_template_filter("gov_metric")
def format_metric(value: float) -> str:
    """A metric for reading: ``0.9500000000000001`` as ``0.95``, ``41.0`` as ``41``.

    Six significant digits, without an exponent for ordinary magnitudes: a float's
    binary noise is not something an approver should have to read past. The template
    keeps the exact value in the cell's ``title``.
    """
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    if 1e6 <= abs(number) < 1e15:
        # %g would switch to an exponent here; counts and sizes read better written out.
        return f"{number:.2f}".rstrip("0").rstrip(".")
    return f"{number:.{_METRIC_DIGITS}g}"


def outcome_line(view: RequestView) -> str:
    """How a closed request ended, each fact once.

    The request's row records who closed it and why (for an applied request, the last
    approver and "approvals satisfied") and, separately, who applied it; they are often
    the same person, who should not be named twice.
    """
    if view.state == APPLIED:
        line = f"Applied by {view.applied_by or 'an unknown user'}"
        if view.applied_at:
            line += f" at {_format_time(view.applied_at)}"
        if view.closed_by and view.closed_by != view.applied_by:
            line += f", approved by {view.closed_by}"
    else:
        line = view.state.capitalize()
        if view.closed_by:
            line += f" by {view.closed_by}"
        if view.updated_at:
            line += f" at {_format_time(view.updated_at)}"
    if view.closed_reason:
        line += f": {view.closed_reason}"
    return line if line.endswith((".", "!", "?")) else f"{line}."


def _page(template: str, status: int = 200, **context: Any) -> Response:
    service = _service()
    context.setdefault("me", service.identity)
    context.setdefault("auth_mode", service.auth_mode)
    context.setdefault("mlflow_ui", static_prefixed("/"))
    context.setdefault("csrf_field", CSRF_FIELD)
    response = make_response(render_template(template, **context), status)
    return response


@dataclass(frozen=True)
class Caller:
    """The application service as one caller of the page uses it."""

    service: GovernanceService
    identity: Identity
    auth_mode: str

    def requests(self, state: str | None = None, model: str | None = None) -> list[RequestView]:
        """Requests the caller may read."""
        return self.service.request_views(self.identity, state, model)

    def request(self, request_id: Any) -> RequestView:
        """One request (``read`` needed)."""
        return self.service.request_view(self.identity, request_id)

    def may_vote(self, view: RequestView) -> bool:
        """Whether to show the approve and reject buttons."""
        return self.service.may_vote(self.identity, view)

    def vote(self, request_id: Any, action: str, comment: str | None) -> dict[str, Any]:
        """Approve, reject or cancel."""
        return self.service.vote(self.identity, request_id, action, comment)

    def audit(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Audit rows (``audit:read`` needed)."""
        return self.service.audit_list(self.identity, args)

    def history(self, model: str) -> list[dict[str, Any]]:
        """Stage and alias history (``audit:read`` needed)."""
        return self.service.history(self.identity, model)


def _service() -> Caller:
    return Caller(service(), current_identity(), governance().auth_mode)


def _error_message(exc: Exception) -> str:
    return exc.message if isinstance(exc, GovernanceError | MlflowException) else str(exc)


def _status(exc: GovernanceError | MlflowException) -> int:
    return int(exception_response(exc).status_code)


@blueprint.get("/")
def index() -> Response:
    """Pending (or ``?state=``) requests with approve and reject forms."""
    state = request.args.get("state", PENDING)
    if state not in FILTERS:
        state = PENDING
    service = _service()
    error = None
    try:
        views = service.requests(None if state == "all" else state)
    except (GovernanceError, MlflowException) as exc:
        views, error = [], _error_message(exc)
    return _page(
        "governance_index.html",
        requests=views,
        voters={view.id for view in views if view.state == PENDING and service.may_vote(view)},
        state=state,
        states=FILTERS,
        open_states=OPEN_STATES,
        error=error,
    )


@blueprint.get("/requests/<request_id>")
def request_detail(request_id: str) -> Response:
    """One request: the version, its metrics and tags, the gate's needs, the approvals.

    The version's source run, source and metrics are shown only to users MLflow lets read
    that run (and logged model): see :func:`_run_data`.
    """
    service = _service()
    try:
        view = service.request(parse_id(request_id, "request_id"))
    except (GovernanceError, MlflowException) as exc:
        return _page(
            "governance_error.html",
            status=_status(exc),
            title=f"Request #{request_id[:24]}",  # the raw path segment, maybe hostile
            message=_error_message(exc),
        )
    return _page(
        "governance_request.html",
        req=view,
        may_vote=view.state == PENDING and service.may_vote(view),
        version=_version_details(service, view.model, view.version),
        open_states=OPEN_STATES,
        outcome=None if view.state in OPEN_STATES else outcome_line(view),
    )


@blueprint.post("/requests/<request_id>/<any(approve, reject, cancel):action>")
@csrf_protected
def act(request_id: str, action: str) -> Any:
    """Approve, reject or cancel from a form, then back to where the form was.

    The message says where the request stands only when the page it lands on does not:
    the request's own page shows its state, what the gate still needs or how it ended,
    and the list (pending requests) shows a request that is still pending, but not one
    that was just applied, rejected or cancelled.
    """
    comment = (request.form.get("comment") or "").strip() or None
    to_index = request.form.get("next") == "index"
    try:
        number = parse_id(request_id, "request_id")
    except GovernanceError as exc:
        return _page("governance_error.html", status=400, title="Request", message=exc.message)
    try:
        view = _service().vote(number, action, comment)
    except (GovernanceError, MlflowException) as exc:
        flash(_error_message(exc), "error")
    else:
        done = {"approve": "Approved", "reject": "Rejected", "cancel": "Cancelled"}[action]
        if to_index and view["state"] != PENDING:
            flash(f"{done} request #{number}: it is {view['state']}.", "ok")
        else:
            flash(f"{done} request #{number}.", "ok")
        extra = view.get("apply_error")
        if extra:
            flash(f"Approved, but the move could not be applied: {extra}", "error")
    if not to_index:
        return redirect(url_for(".request_detail", request_id=number), code=303)
    return redirect(url_for(".index"), code=303)


@blueprint.get("/model")
def model() -> Response:
    """A model's requests, and its audit trail, stage and alias history and holders.

    The requests need ``read`` on the model (others are left out); the rest needs
    ``audit:read``. Approvers reach this page from a request, and a policy may let them
    approve without letting them read the audit log: then the page still shows the
    requests and says, with the policy's refusal and its way out, why the rest is not
    shown (with status 403, as before). The refusal is audited by the service; history
    is not asked for after it, so one refused look is one audit row.
    """
    name = (request.args.get("name") or "").strip()
    if not name:
        return _page(
            "governance_error.html",
            status=400,
            title="Model",
            message="Give a registered model name (?name=...).",
        )
    service = _service()
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    audit_refusal = None
    try:
        try:
            rows = service.audit(
                {"model": name, "limit": str(_AUDIT_ROWS_ON_PAGE), "newest_first": "true"}
            )
            events = service.history(name)
        except (GovernanceError, MlflowException) as exc:
            if _status(exc) != 403:
                raise
            audit_refusal = _error_message(exc)
        requests = service.requests(model=name)
    except (GovernanceError, MlflowException) as exc:
        return _page(
            "governance_error.html",
            status=_status(exc),
            title=f"Model {name}",
            message=_error_message(exc),
        )
    from mlflow_governance.audit.history import HistoryEvent, holders_at

    holders = holders_at([HistoryEvent(**event) for event in events])
    return _page(
        "governance_model.html",
        # Still 403 when the audit log is refused: the page answers, but not all it was
        # asked for, and clients (and MLflow's own conventions) read the status.
        status=403 if audit_refusal else 200,
        name=name,
        rows=rows,
        events=list(reversed(events)),
        holders=holders,
        requests=requests,
        limit=_AUDIT_ROWS_ON_PAGE,
        audit_refusal=audit_refusal,
    )


def _version_details(service: Caller, name: str, version: int) -> dict[str, Any]:
    """What an approver wants to see about a version; never fails the page."""
    details: dict[str, Any] = {"found": False, "metrics": {}, "tags": {}, "aliases": []}
    try:
        mv = service.service.store.raw_version(name, version)
    except MlflowException as exc:
        details["error"] = exc.message
        return details
    details.update(
        found=True,
        creator=mv.user_id,
        stage=mv.current_stage,
        aliases=sorted(mv.aliases or []),
        description=mv.description,
        tags=dict(sorted((mv.tags or {}).items())),
        created=mv.creation_timestamp,
    )
    details.update(_run_data(service, mv))
    return details


def _run_data(service: Caller, mv: Any) -> dict[str, Any]:
    """The version's source, source run and metrics, if the caller may see them.

    Basic mode asks MLflow's own permissions: the run (its experiment) and the logged
    model must both be readable by the caller, as MLflow's run page would require;
    basic-auth's admins always see them. A run or logged model that cannot be read back
    (deleted, or the tracking store unreachable) cannot be checked, so nothing is shown.
    Trusted-header mode has no MLflow permissions: the page itself needed the policy's
    ``read`` on the model, and that is what shows the run data.

    Returns:
        ``source``, ``run_id``, ``model_id``, ``experiment_id`` and ``metrics``, or
        ``run_hidden`` with the reason they are withheld (which names no run).
    """
    from mlflow.server.handlers import _get_tracking_store

    model_id = getattr(mv, "model_id", None)
    run_id = mv.run_id or None
    run = logged = None
    try:
        tracking = _get_tracking_store()
        logged = tracking.get_logged_model(model_id) if model_id else None
        run = tracking.get_run(run_id) if run_id else None
    except Exception:  # a deleted run or an unreachable store must not break the page
        if service.auth_mode == AUTH_BASIC:
            return {"run_hidden": "its source run could not be read to check your access."}
    if service.auth_mode == AUTH_BASIC:
        user = service.identity.user
        readable = (run is None or mlflow_permissions.may_read_run(user, run)) and (
            logged is None or mlflow_permissions.may_read_logged_model(user, logged)
        )
        if not readable:
            return {
                "run_hidden": "MLflow does not let you read this version's source run or "
                "logged model (ask for read access to its experiment)."
            }
    metrics: dict[str, float] = {}
    experiment_id = None
    if logged is not None:
        for metric in logged.metrics or []:
            metrics.setdefault(metric.key, float(metric.value))
        experiment_id = logged.experiment_id
    if run is not None:
        experiment_id = run.info.experiment_id
        for key, value in run.data.metrics.items():
            metrics.setdefault(key, float(value))
    return {
        "source": mv.source,
        "run_id": run_id,
        "model_id": model_id,
        "experiment_id": experiment_id,
        "metrics": dict(sorted(metrics.items())),
    }


@blueprint.errorhandler(404)
def _not_found(_exc: Exception) -> Response:
    return _page(
        "governance_error.html", status=404, title="Not found", message="There is no such page."
    )
