"""Security of the governance server in basic-auth mode: authentication on every route,
escaping of user-supplied strings, CSRF tokens on every form, and run data on the request
page only for users MLflow lets read the run.
"""

from __future__ import annotations

import re

import pytest
import requests
from markupsafe import escape

from tests.server.conftest import ADMIN, API, GovServer, password_of, register

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("governance-sqlite")]

XSS_MODEL = "<img src=x onerror=alert(1)>"
XSS_COMMENT = "<script>alert('comment')</script>"

#: Every governance route, with a method it answers.
ROUTES = [
    ("GET", f"{API}/requests"),
    ("POST", f"{API}/requests"),
    ("GET", f"{API}/requests/1"),
    ("POST", f"{API}/requests/1/approve"),
    ("POST", f"{API}/requests/1/reject"),
    ("POST", f"{API}/requests/1/cancel"),
    ("GET", f"{API}/audit"),
    ("GET", f"{API}/history?model=x"),
    ("GET", f"{API}/policy"),
    ("GET", f"{API}/whoami"),
    ("GET", f"{API}/openapi.json"),
    ("GET", f"{API}/check?model=x&version=1&gate=production"),
    ("POST", f"{API}/promote"),
    ("POST", f"{API}/rollback"),
    ("GET", f"{API}/audit/export"),
    ("POST", f"{API}/audit/verify"),
    ("POST", f"{API}/audit/checkpoint"),
    ("POST", f"{API}/policy"),
    ("GET", f"{API}/policy/explain?user=x&model=x"),
    ("GET", f"{API}/events"),
    ("POST", f"{API}/events/retry"),
    ("GET", f"{API}/gitops/render?model=x&stage=Production"),
    ("GET", "/governance/"),
    ("GET", "/governance/requests/1"),
    ("GET", "/governance/model?name=x"),
    ("POST", "/governance/requests/1/approve"),
    ("POST", "/governance/requests/1/reject"),
    ("POST", "/governance/requests/1/cancel"),
    ("GET", "/governance/static/governance.css"),
]


@pytest.fixture
def gov(sqlite_server: GovServer) -> GovServer:
    return sqlite_server


@pytest.mark.parametrize("credentials", [None, ("alice", "wrong password"), ("nobody", "x" * 12)])
def test_every_governance_route_needs_authentication(
    gov: GovServer, credentials: tuple[str, str] | None
) -> None:
    for method, path in ROUTES:
        response = requests.request(
            method,
            f"{gov.url}{path}",
            auth=credentials,
            json={} if method == "POST" else None,
            headers={"X-Forwarded-User": "admin"},  # ignored in basic mode
            timeout=60,
        )
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["error_code"] == "UNAUTHENTICATED", (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Basic"), (method, path)


def test_health_stays_open(gov: GovServer) -> None:
    assert requests.get(f"{gov.url}/health", timeout=60).status_code == 200


def _csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def test_user_supplied_strings_render_inert(gov: GovServer) -> None:
    version = register(gov, "alice", XSS_MODEL)
    created = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={
            "model": XSS_MODEL,
            "version": version,
            "target": "Production",
            "comment": XSS_COMMENT,
        },
    )
    dave = gov.session("dave")
    pages = [
        dave.get(f"{gov.url}/governance/", timeout=60),
        dave.get(f"{gov.url}/governance/requests/{created['id']}", timeout=60),
        dave.get(f"{gov.url}/governance/model", params={"name": XSS_MODEL}, timeout=60),
    ]
    for page in pages:
        assert page.status_code == 200, page.url
        text = page.text
        assert "<img src=x" not in text and "<script>" not in text, page.url
        assert str(escape(XSS_MODEL)) in text
        assert "script-src 'none'" in page.headers["Content-Security-Policy"]
    assert str(escape(XSS_COMMENT)) in pages[1].text
    # A refusal message quoting the name is escaped too.
    refused = gov.session("mallory").get(
        f"{gov.url}/governance/model", params={"name": XSS_MODEL}, timeout=60
    )
    assert refused.status_code == 403
    assert "<img src=x" not in refused.text


def test_form_posts_need_the_sessions_csrf_token(gov: GovServer) -> None:
    name = "sec-csrf"
    version = register(gov, "alice", name)
    created = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": version, "target": "Production"},
    )
    url = f"{gov.url}/governance/requests/{created['id']}/approve"

    dave = requests.Session()
    dave.auth = ("dave", password_of("dave"))
    token = _csrf_token(dave.get(f"{gov.url}/governance/", timeout=60).text)

    missing = dave.post(url, data={"comment": "no token"}, allow_redirects=False, timeout=60)
    wrong = dave.post(
        url,
        data={"comment": "bad", "csrf_token": token[:-2] + "xx"},
        allow_redirects=False,
        timeout=60,
    )
    # A token is bound to its session: erin's session cannot replay dave's.
    erin = requests.Session()
    erin.auth = ("erin", password_of("erin"))
    foreign = erin.post(
        url, data={"comment": "replayed", "csrf_token": token}, allow_redirects=False, timeout=60
    )
    for refused in (missing, wrong, foreign):
        assert refused.status_code == 403
        assert "CSRF token" in refused.text
    assert (
        gov.call("dave", "GET", "/requests/{request_id}", request_id=created["id"])["approvals"]
        == []
    )

    accepted = dave.post(
        url, data={"comment": "with token", "csrf_token": token}, allow_redirects=False, timeout=60
    )
    assert accepted.status_code == 303
    assert accepted.headers["Location"].endswith(f"/governance/requests/{created['id']}")
    after = gov.call("dave", "GET", "/requests/{request_id}", request_id=created["id"])
    assert [(a["approver"], a["comment"]) for a in after["approvals"]] == [("dave", "with token")]
    page = dave.get(
        accepted.headers["Location"]
        if accepted.headers["Location"].startswith("http")
        else f"{gov.url}{accepted.headers['Location']}",
        timeout=60,
    )
    assert "Approved request #" in page.text


def test_the_request_page_shows_run_data_only_to_who_mlflow_lets_read_the_run(
    gov: GovServer,
) -> None:
    name = "sec-run-data"
    metric = 0.987654
    with gov.as_user("alice") as client:
        experiment_id = client.create_experiment(f"{name}-experiment")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_metric(run_id, "accuracy", metric)
        client.create_registered_model(name)
        version = client.create_model_version(
            name, f"runs:/{run_id}/model", run_id=run_id, tags={"validation_status": "passed"}
        ).version
    created = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": version, "target": "Production"},
    )
    # MLflow's admin takes the experiment away from dave, one of the gate's approvers.
    granted = gov.rest(
        ADMIN,
        "POST",
        "/api/3.0/mlflow/users/permissions/grant",
        json={
            "username": "dave",
            "resource_type": "experiment",
            "resource_id": experiment_id,
            "permission": "DENY",
        },
    )
    assert granted.status_code == 200, granted.text
    assert (
        gov.rest("dave", "GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id}).status_code
        == 403
    )

    url = f"{gov.url}/governance/requests/{created['id']}"
    hidden = gov.session("dave").get(url, timeout=60)
    assert hidden.status_code == 200
    assert run_id not in hidden.text and str(metric) not in hidden.text
    assert "Run data hidden: MLflow does not let you read" in hidden.text
    assert f"Request #{created['id']}" in hidden.text and "Approvals so far" in hidden.text
    for reader in ("erin", ADMIN):  # erin reads it (default_permission READ); admins always
        shown = gov.session(reader).get(url, timeout=60)
        assert shown.status_code == 200
        assert run_id in shown.text and str(metric) in shown.text, reader
        assert "Run data hidden" not in shown.text
