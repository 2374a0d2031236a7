"""MLflow's workspace boundary holds on the registry routes the governance app serves.

The server runs with ``--enable-workspaces``. MLflow's admin creates workspaces
``team-a`` and ``team-b`` (each gets MLflow's seeded roles) and puts alice and mallory in
team-a's ``user`` role; nobody but the admin is in team-b. The policy
(``policies/server.yaml``) lets alice (data-science) register and edit *every* model
and gives mallory nothing, so what keeps alice out of team-b is MLflow's workspace
permission alone, and what keeps mallory off alice's models inside team-a is the policy
alone.

The attacker is alice: an ordinary account, a member of team-a, reaching for team-b's
model with the stock ``MlflowClient`` (``MLFLOW_WORKSPACE=team-b``) and with plain HTTP
(the ``X-MLflow-Workspace`` header).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from mlflow.exceptions import MlflowException

from tests.server.conftest import ADMIN, API, GovServer, governance_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("governance-workspaces")]

WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"
TEAM_A, TEAM_B = "team-a", "team-b"
B_MODEL = "team-b-fraud"


def _call(
    gov: GovServer, user: str, method: str, path: str, workspace: str | None, **kwargs: Any
) -> requests.Response:
    headers = {WORKSPACE_HEADER: workspace} if workspace else {}
    return gov.rest(user, method, path, headers=headers, **kwargs)


def _ok(response: requests.Response) -> Any:
    assert response.status_code in (200, 201), (response.status_code, response.text)
    return response.json()


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovServer]:
    workdir = tmp_path_factory.mktemp("governance-workspaces")
    with governance_server(workdir, extra_args=["--enable-workspaces"]) as running:
        for workspace in (TEAM_A, TEAM_B):
            _ok(
                _call(
                    running,
                    ADMIN,
                    "POST",
                    "/api/3.0/mlflow/workspaces",
                    None,
                    json={"name": workspace},
                )
            )
        roles = _ok(
            _call(
                running,
                ADMIN,
                "GET",
                "/api/3.0/mlflow/roles/list",
                None,
                params={"workspace": TEAM_A},
            )
        )["roles"]
        member = next(role["id"] for role in roles if role["name"] == "user")
        for user in ("alice", "mallory"):
            _ok(
                _call(
                    running,
                    ADMIN,
                    "POST",
                    "/api/3.0/mlflow/roles/assign",
                    None,
                    json={"username": user, "role_id": member},
                )
            )
        # Team-b's model, made by MLflow's admin (also the policy's admin).
        _ok(
            _call(
                running,
                ADMIN,
                "POST",
                "/api/2.0/mlflow/registered-models/create",
                TEAM_B,
                json={"name": B_MODEL, "tags": [{"key": "owner", "value": "team-b"}]},
            )
        )
        _ok(
            _call(
                running,
                ADMIN,
                "POST",
                "/api/2.0/mlflow/model-versions/create",
                TEAM_B,
                json={"name": B_MODEL, "source": f"s3://bucket/{B_MODEL}/model"},
            )
        )
        yield running


def _team_b_model(gov: GovServer) -> dict[str, Any]:
    answer = _ok(
        _call(
            gov,
            ADMIN,
            "GET",
            "/api/2.0/mlflow/registered-models/get",
            TEAM_B,
            params={"name": B_MODEL},
        )
    )
    model: dict[str, Any] = answer["registered_model"]
    return model


def _assert_workspace_refusal(response: requests.Response, workspace: str) -> None:
    assert response.status_code == 403, (response.status_code, response.text)
    body = response.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    assert f"workspace '{workspace}'" in body["message"], body


RM = "/api/2.0/mlflow/registered-models"
MV = "/api/2.0/mlflow/model-versions"
TAG = {"key": "k", "value": "v"}

#: What alice tries on team-b's model over plain HTTP: (method, path, body or query).
ATTEMPTS = [
    ("GET", f"{RM}/get", {"name": B_MODEL}),
    ("GET", f"{RM}/search", {"filter": f"name = '{B_MODEL}'"}),
    ("GET", f"{MV}/get", {"name": B_MODEL, "version": "1"}),
    ("GET", f"{MV}/search", {"filter": f"name = '{B_MODEL}'"}),
    ("GET", "/ajax-api/2.0/mlflow/registered-models/get", {"name": B_MODEL}),
    ("POST", f"{RM}/set-tag", {"name": B_MODEL, **TAG}),
    ("POST", f"{RM}/rename", {"name": B_MODEL, "new_name": "stolen"}),
    ("PATCH", f"{RM}/update", {"name": B_MODEL, "description": "x"}),
    ("POST", f"{MV}/set-tag", {"name": B_MODEL, "version": "1", **TAG}),
    ("DELETE", f"{RM}/delete", {"name": B_MODEL}),
    ("POST", f"{RM}/create", {"name": "alice-in-team-b"}),
    ("GET", f"{API}/requests", {}),
    ("POST", f"{API}/requests", {"model": B_MODEL, "version": 1, "target": "Production"}),
]


@pytest.mark.parametrize(("method", "path", "payload"), ATTEMPTS, ids=lambda v: str(v)[:40])
def test_a_team_a_member_is_refused_in_team_b_over_http(
    gov: GovServer, method: str, path: str, payload: dict[str, Any]
) -> None:
    before = _team_b_model(gov)
    in_query = method == "GET"
    response = _call(
        gov,
        "alice",
        method,
        path,
        TEAM_B,
        params=payload if in_query else None,
        json=None if in_query else payload,
    )
    _assert_workspace_refusal(response, TEAM_B)
    assert _team_b_model(gov) == before


def test_the_stock_client_in_team_b_is_refused_reading_tagging_and_renaming(
    gov: GovServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _team_b_model(gov)
    monkeypatch.setenv("MLFLOW_WORKSPACE", TEAM_B)
    with gov.as_user("alice") as client:
        for attempt in (
            lambda: client.get_registered_model(B_MODEL),
            lambda: client.get_model_version(B_MODEL, "1"),
            lambda: client.set_registered_model_tag(B_MODEL, "owner", "alice"),
            lambda: client.rename_registered_model(B_MODEL, "alice-owns-this"),
        ):
            with pytest.raises(MlflowException) as refused:
                attempt()
            assert refused.value.error_code == "PERMISSION_DENIED"
            assert f"workspace '{TEAM_B}'" in refused.value.message
    assert _team_b_model(gov) == before


def test_a_team_a_member_reads_tags_and_renames_in_team_a(
    gov: GovServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_WORKSPACE", TEAM_A)
    with gov.as_user("alice") as client:
        client.create_registered_model("team-a-churn")
        client.create_model_version("team-a-churn", "s3://bucket/team-a-churn/model")
        client.set_registered_model_tag("team-a-churn", "owner", "alice")
        client.rename_registered_model("team-a-churn", "team-a-churn-v2")
        model = client.get_registered_model("team-a-churn-v2")
        assert model.tags == {"owner": "alice"}
        assert client.get_model_version("team-a-churn-v2", "1").version == "1"
    listed = _call(gov, "alice", "GET", f"{API}/requests", TEAM_A)
    assert listed.status_code == 200, listed.text


def test_inside_a_workspace_the_policy_still_decides(gov: GovServer) -> None:
    """Mallory is a team-a member, so MLflow lets her in; the policy grants her nothing."""
    _ok(
        _call(
            gov,
            "alice",
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            TEAM_A,
            json={"name": "team-a-policy"},
        )
    )
    for method, path, payload in (
        ("POST", "/api/2.0/mlflow/registered-models/set-tag", {"key": "k", "value": "v"}),
        ("POST", "/api/2.0/mlflow/registered-models/rename", {"new_name": "mallory-owns-it"}),
    ):
        response = _call(
            gov, "mallory", method, path, TEAM_A, json={"name": "team-a-policy", **payload}
        )
        assert response.status_code == 403, response.text
        message = response.json()["message"]
        assert message.startswith("Refused: mallory may not edit"), message
        assert "workspace" not in message


def test_without_a_role_in_the_default_workspace_a_user_is_refused_there(gov: GovServer) -> None:
    response = _call(
        gov, "alice", "GET", "/api/2.0/mlflow/registered-models/search", None, params={}
    )
    _assert_workspace_refusal(response, "default")
    # Who you are and the rules are not a workspace's: they stay readable.
    assert _call(gov, "alice", "GET", f"{API}/whoami", TEAM_B).status_code == 200
    assert _call(gov, "alice", "GET", f"{API}/policy", TEAM_B).status_code == 200
