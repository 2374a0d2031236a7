"""Hostile input from an ordinary account, on the shared SQLite server.

Integers no column holds (beyond 64 bits, beyond MLflow's 32-bit version column,
negative or zero where a positive id is expected) sent in REST bodies, URL paths and query
strings of the governance API and of MLflow's registry routes: each is answered with
HTTP 400 and MLflow's JSON error ``INVALID_PARAMETER_VALUE``, never a 500 or an HTML
page. The stock client, which retries a 500 several times before giving up, gets the
400 at once. Hostile model names (``tests/server/hostile.py``) are refused cleanly.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from tests.server import hostile
from tests.server.conftest import API, GovServer, register

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("governance-sqlite")]

NAME = "hostile-int"
HUGE = "9" * 23  # beyond 64 bits
OVER_INT64 = str(2**63)
OVER_VERSION = str(2**31)  # fits 64 bits, not MLflow's model_versions.version
RM = "/api/2.0/mlflow/registered-models"
MV = "/api/2.0/mlflow/model-versions"


def _page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


@pytest.fixture(scope="module")
def gov(sqlite_server: GovServer) -> GovServer:
    register(sqlite_server, "alice", NAME)
    return sqlite_server


#: (user, method, path, query, body): every one must be a clean 400.
M = {"name": NAME}
REQ = {"model": NAME, "target": "Production"}
BAD_INTEGERS = [
    ("alice", "GET", f"{MV}/get", {**M, "version": HUGE}, None),
    ("alice", "GET", f"{MV}/get", {**M, "version": OVER_INT64}, None),
    ("alice", "GET", f"{MV}/get", {**M, "version": OVER_VERSION}, None),
    ("alice", "GET", f"{MV}/get", {**M, "version": "-1"}, None),
    ("alice", "GET", f"{MV}/get", {**M, "version": "0"}, None),
    ("alice", "GET", "/ajax-api/2.0/mlflow/model-versions/get", {**M, "version": HUGE}, None),
    ("alice", "GET", f"{MV}/get-download-uri", {**M, "version": HUGE}, None),
    ("alice", "GET", "/model-versions/get-artifact", {**M, "version": HUGE, "path": "x"}, None),
    ("carol", "POST", f"{MV}/transition-stage", None, {**M, "version": HUGE, "stage": "Staging"}),
    ("carol", "POST", f"{MV}/transition-stage", None, {**M, "version": 2**70, "stage": "Staging"}),
    ("alice", "POST", f"{MV}/set-tag", None, {**M, "version": HUGE, "key": "k", "value": "v"}),
    ("alice", "DELETE", f"{MV}/delete-tag", None, {**M, "version": HUGE, "key": "k"}),
    ("alice", "PATCH", f"{MV}/update", None, {**M, "version": "-7", "description": "x"}),
    ("carol", "POST", f"{RM}/alias", None, {**M, "version": HUGE, "alias": "challenger"}),
    ("alice", "DELETE", f"{MV}/delete", None, {**M, "version": HUGE}),
    ("alice", "GET", f"{MV}/search", {"filter": f"version_number = {HUGE}"}, None),
    ("alice", "GET", f"{MV}/search", {"page_token": _page_token(10**30)}, None),
    ("alice", "GET", f"{RM}/search", {"page_token": _page_token(-1)}, None),
    ("dave", "GET", f"{API}/requests/{HUGE}", None, None),
    ("dave", "GET", f"{API}/requests/-1", None, None),
    ("dave", "GET", f"{API}/requests/0", None, None),
    ("dave", "POST", f"{API}/requests/{HUGE}/approve", None, {}),
    ("dave", "POST", f"{API}/requests/{OVER_INT64}/reject", None, {}),
    ("carol", "POST", f"{API}/requests/-3/cancel", None, {}),
    ("carol", "POST", f"{API}/requests", None, {**REQ, "version": HUGE}),
    ("carol", "POST", f"{API}/requests", None, {**REQ, "version": 1e300}),
    ("carol", "POST", f"{API}/requests", None, {**REQ, "version": -1}),
    ("dave", "GET", f"{API}/audit", {"version": HUGE}, None),
    ("dave", "GET", f"{API}/audit", {"limit": HUGE}, None),
]


@pytest.mark.parametrize(
    ("user", "method", "path", "query", "body"),
    BAD_INTEGERS,
    ids=[f"{method} {path} {query or body}"[:70] for _, method, path, query, body in BAD_INTEGERS],
)
def test_an_integer_no_column_holds_is_a_clean_400(
    gov: GovServer,
    user: str,
    method: str,
    path: str,
    query: dict[str, Any] | None,
    body: dict[str, Any] | None,
) -> None:
    response = gov.rest(user, method, path, params=query, json=body)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()
    assert error["error_code"] == "INVALID_PARAMETER_VALUE", error
    assert "Traceback" not in response.text and "sqlite" not in response.text.lower()


def test_the_stock_client_gets_the_400_at_once(gov: GovServer) -> None:
    with gov.as_user("carol") as client:
        for attempt in (
            lambda: client.get_model_version(NAME, HUGE),
            lambda: client.transition_model_version_stage(NAME, HUGE, "Staging"),
            lambda: client.set_registered_model_alias(NAME, "challenger", OVER_INT64),
        ):
            with pytest.raises(MlflowException) as refused:
                attempt()
            assert refused.value.error_code == "INVALID_PARAMETER_VALUE", refused.value.message


def test_the_request_page_answers_a_huge_id_with_a_400_page(gov: GovServer) -> None:
    page = gov.session("dave").get(f"{gov.url}/governance/requests/{HUGE}", timeout=60)
    assert page.status_code == 400
    assert "request_id must be an integer from 1 to" in page.text
    assert "Traceback" not in page.text


def test_integers_that_fit_still_work(gov: GovServer) -> None:
    answer = gov.rest("alice", "GET", f"{MV}/get", params={"name": NAME, "version": "1"})
    assert answer.status_code == 200, answer.text
    missing = gov.rest("alice", "GET", f"{MV}/get", params={"name": NAME, "version": "2147483647"})
    assert missing.status_code == 404, missing.text
    assert gov.rest("dave", "GET", f"{API}/requests/9223372036854775807").status_code == 404
    found = gov.rest(
        "alice", "GET", f"{MV}/search", params={"filter": f"name = '{NAME}' and version_number = 1"}
    )
    assert found.status_code == 200 and len(found.json()["model_versions"]) == 1
    # A digit run inside a quoted string is a name, not a number.
    named = gov.rest("alice", "GET", f"{RM}/search", params={"filter": f"name = 'x-{HUGE}'"})
    assert named.status_code == 200, named.text


@pytest.mark.parametrize(("operation", "name"), hostile.cases())
def test_a_hostile_model_name_is_refused_cleanly(gov: GovServer, operation: str, name: str) -> None:
    hostile.assert_refused_cleanly(gov, operation, name)
