"""Where a person finds a request: its page on the governance server, when there is one.

Refusals name the next step for the person reading them. Inside a request served by the
governance server that step is the request's page; elsewhere (local mode, a server without
the governance app) there is no page, and the caller gets a command instead.
"""

from __future__ import annotations

import sys

from mlflow_governance import config

#: The page's request endpoint, as the governance app registers it.
_REQUEST_PAGE_ENDPOINT = "mlflow_governance_page.request_detail"


def request_page(request_id: int) -> str | None:
    """The URL of a request's page, when the current call is served by the governance app.

    ``MLFLOW_GOVERNANCE_PUBLIC_URL`` replaces the scheme and host the request came in on
    (a proxy in front of the server may have changed them).
    """
    # Only a process that already imported Flask can be serving a request.
    if "flask" not in sys.modules:
        return None
    import flask

    if not flask.has_request_context():
        return None
    if _REQUEST_PAGE_ENDPOINT not in flask.current_app.view_functions:
        return None
    path = flask.url_for(_REQUEST_PAGE_ENDPOINT, request_id=request_id)
    base = config.public_url() or flask.request.host_url.rstrip("/")
    return f"{base}{path}"


def follow_request(request_id: int, model: str) -> str:
    """A sentence telling the requester where to follow a request."""
    page = request_page(request_id)
    if page is not None:
        return f"Follow it at {page}"
    return f"Follow it with: mlflow-governance requests --model '{model}'"
