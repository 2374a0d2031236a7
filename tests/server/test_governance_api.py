"""End to end on SQLite: a real ``mlflow server --app-name governance``, stock clients.

Registration, a refused Production transition that names the request it opened, two
approvals over the governance REST API, the automatic apply, and audit rows whose actor
is the user basic-auth authenticated, whatever identity header the client sends. Every
governance response is checked against the server's own ``openapi.json``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest
from mlflow.exceptions import MlflowException

from tests.server.conftest import GovServer, password_of, register

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("governance-sqlite")]


@pytest.fixture
def gov(sqlite_server: GovServer) -> GovServer:
    return sqlite_server


class _SpoofedUser:
    """A request header provider: the stock client claims to be someone else."""

    def __init__(self, name: str) -> None:
        self.name = name

    def in_context(self) -> bool:
        return True

    def request_headers(self) -> dict[str, str]:
        return {"X-Forwarded-User": self.name, "X-Forwarded-Groups": "release-managers"}


@contextlib.contextmanager
def spoofing(name: str) -> Iterator[None]:
    """Make every MlflowClient request carry ``X-Forwarded-User: name`` for the block."""
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    provider = _SpoofedUser(name)
    _request_header_provider_registry._registry.append(provider)
    try:
        yield
    finally:
        _request_header_provider_registry._registry.remove(provider)


def _audit(gov: GovServer, **params: object) -> list[dict]:
    return gov.call("admin", "GET", "/audit", params={"limit": 500, **params})


def test_refused_production_move_opens_a_request_two_approvals_apply_it(gov: GovServer) -> None:
    name = "api-fraud"
    version = register(gov, "alice", name)

    with gov.as_user("carol") as client, pytest.raises(MlflowException) as refused:
        client.transition_model_version_stage(name, version, "Production")
    assert refused.value.error_code == "PERMISSION_DENIED"
    match = re.search(r"Request #(\d+)", refused.value.message)
    assert match, refused.value.message
    request_id = int(match.group(1))

    # The same refusal over MLflow's REST API: 403, MLflow's JSON error, the request named.
    raw = gov.rest(
        "carol",
        "POST",
        "/api/2.0/mlflow/model-versions/transition-stage",
        json={
            "name": name,
            "version": str(version),
            "stage": "Production",
            "archive_existing_versions": False,
        },
    )
    assert raw.status_code == 403
    assert raw.json()["error_code"] == "PERMISSION_DENIED"
    assert f"Request #{request_id}" in raw.json()["message"]

    pending = gov.call("dave", "GET", "/requests", params={"state": "pending", "model": name})
    assert [r["id"] for r in pending] == [request_id]
    assert pending[0]["requester"] == "carol"
    assert pending[0]["target"] == "Production"

    refusal = gov.call(
        "carol",
        "POST",
        "/requests/{request_id}/approve",
        expect=403,
        request_id=request_id,
        json={"comment": "my own"},
    )
    assert refusal["error_code"] == "PERMISSION_DENIED"

    first = gov.call(
        "dave",
        "POST",
        "/requests/{request_id}/approve",
        request_id=request_id,
        json={"comment": "metrics look right"},
    )
    assert first["state"] == "pending"
    assert [a["approver"] for a in first["approvals"]] == ["dave"]
    assert "1 so far" in (first["needs"] or "")

    second = gov.call(
        "erin",
        "POST",
        "/requests/{request_id}/approve",
        request_id=request_id,
        json={"comment": "ship it"},
    )
    assert second["state"] == "applied"
    assert second["applied_by"] == "erin"

    with gov.as_user("oscar") as client:
        assert client.get_model_version(name, version).current_stage == "Production"

    rows = _audit(gov, model=name)
    moves = [r for r in rows if r["action"] == "transition_model_version_stage"]
    applied = [r for r in moves if r["stage_after"] == "Production" and r["decision"] == "allow"]
    assert [(r["actor"], r["identity_source"], r["request_id"]) for r in applied] == [
        ("erin", "server", request_id)
    ]
    assert any(r["actor"] == "carol" and r["decision"] == "deny" for r in moves)
    votes = [(r["actor"], r["action"]) for r in rows if r["action"].endswith("_request")]
    assert ("dave", "approve_request") in votes and ("erin", "approve_request") in votes

    history = gov.call("dave", "GET", "/history", params={"model": name})
    assert history[-1]["after"] == "Production" and history[-1]["actor"] == "erin"
    holders = gov.call(
        "dave", "GET", "/history", params={"model": name, "at": "2999-01-01T00:00:00Z"}
    )
    assert {"kind": "stage", "name": "Production", "version": version} == {
        k: holders[0][k] for k in ("kind", "name", "version")
    }


def test_actor_is_the_authenticated_user_whatever_header_the_client_sends(gov: GovServer) -> None:
    name = "api-spoof"
    with spoofing("dave"), gov.as_user("alice") as client:
        client.create_registered_model(name)
        client.create_model_version(name, f"s3://bucket/{name}", tags={"k": "v"})
        client.set_registered_model_tag(name, "team", "fraud")

    rows = _audit(gov, model=name)
    assert {r["action"] for r in rows} >= {
        "create_registered_model",
        "create_model_version",
        "set_registered_model_tag",
    }
    assert {(r["actor"], r["identity_source"]) for r in rows} == {("alice", "server")}
    assert all(r["client_address"] == "127.0.0.1" for r in rows)
    assert all("mlflow-python-client" in (r["user_agent"] or "") for r in rows)

    me = gov.call(
        "alice",
        "GET",
        "/whoami",
        headers={"X-Forwarded-User": "dave", "X-Forwarded-Groups": "admins"},
    )
    assert me["user"] == "alice"
    assert me["identity_source"] == "server"
    assert me["groups"] == ["data-science"]
    assert me["auth"] == "basic"


def test_requests_over_rest_create_reject_and_cancel(gov: GovServer) -> None:
    name = "api-rest-flow"
    version = register(gov, "alice", name)

    created = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": version, "target": "@champion", "comment": "new best"},
    )
    assert (created["model"], created["version"], created["target"], created["state"]) == (
        name,
        version,
        "@champion",
        "pending",
    )
    again = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": str(version), "target": "@champion"},
    )
    assert again["id"] == created["id"]  # the open request is reused

    rejected = gov.call(
        "dave",
        "POST",
        "/requests/{request_id}/reject",
        request_id=created["id"],
        json={"comment": "not yet"},
    )
    assert rejected["state"] == "rejected"
    assert rejected["rejections"][0]["approver"] == "dave"
    closed = gov.call(
        "erin",
        "POST",
        "/requests/{request_id}/approve",
        expect=409,
        request_id=created["id"],
        json={},
    )
    assert closed["error_code"] == "RESOURCE_CONFLICT"

    reopened = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": version, "target": "Production"},
    )
    refused = gov.call(
        "alice", "POST", "/requests/{request_id}/cancel", expect=403, request_id=reopened["id"]
    )
    assert "only the requester" in refused["message"]
    cancelled = gov.call(
        "carol",
        "POST",
        "/requests/{request_id}/cancel",
        request_id=reopened["id"],
        json={"comment": "wrong version"},
    )
    assert cancelled["state"] == "cancelled"

    fetched = gov.call("oscar", "GET", "/requests/{request_id}", request_id=created["id"])
    assert fetched["state"] == "rejected"
    states = {
        r["id"]: r["state"] for r in gov.call("dave", "GET", "/requests", params={"model": name})
    }
    assert states == {created["id"]: "rejected", reopened["id"]: "cancelled"}


def test_refusals_and_bad_input_use_mlflows_error_format(gov: GovServer) -> None:
    name = "api-errors"
    version = register(gov, "alice", name, stage=None)

    no_rights = gov.call(
        "mallory",
        "POST",
        "/requests",
        expect=403,
        json={"model": name, "version": version, "target": "Production"},
    )
    assert no_rights["error_code"] == "PERMISSION_DENIED"
    assert "mallory" in no_rights["message"]

    assert (
        gov.call("dave", "GET", "/requests/{request_id}", expect=404, request_id=999999)[
            "error_code"
        ]
        == "RESOURCE_DOES_NOT_EXIST"
    )
    bad_target = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=400,
        json={"model": name, "version": version, "target": "Nowhere"},
    )
    assert bad_target["error_code"] == "INVALID_PARAMETER_VALUE"
    bad_version = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=400,
        json={"model": name, "version": "one", "target": "Production"},
    )
    assert "version" in bad_version["message"]
    missing = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=404,
        json={"model": name, "version": 99, "target": "Production"},
    )
    assert missing["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    not_json = gov.api("carol", "POST", "/requests", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400  # an empty body lacks model, version and target
    assert (
        gov.call("dave", "GET", "/requests", expect=400, params={"state": "limbo"})["error_code"]
        == "INVALID_PARAMETER_VALUE"
    )
    assert (
        gov.call("dave", "GET", "/audit", expect=400, params={"since": "yesterday"})["error_code"]
        == "INVALID_PARAMETER_VALUE"
    )
    assert gov.call("dave", "GET", "/history", expect=400)["error_code"] == (
        "INVALID_PARAMETER_VALUE"
    )


def test_audit_and_history_need_audit_read(gov: GovServer) -> None:
    name = "api-audit-rights"
    register(gov, "alice", name, stage=None)

    for user in ("mallory", "alice", "oscar"):
        refused = gov.call(user, "GET", "/audit", expect=403, params={"model": name})
        assert refused["error_code"] == "PERMISSION_DENIED"
        assert "audit:read" in refused["message"]
        gov.call(user, "GET", "/history", expect=403, params={"model": name})
    rows = gov.call(
        "dave",
        "GET",
        "/audit",
        params={"model": name, "actor": "alice", "action": "create_model_version"},
    )
    assert len(rows) == 1 and rows[0]["version"] == 1
    assert (
        gov.call(
            "dave",
            "GET",
            "/audit",
            params={"model": name, "decision": "deny", "action": "create_model_version"},
        )
        == []
    )
    # The refusals above were audited too.
    denied = _audit(gov, decision="deny", actor="mallory", action="read_audit")
    assert denied and denied[-1]["model"] == name


def test_requests_list_only_readable_models(gov: GovServer) -> None:
    name = "api-listing"
    version = register(gov, "alice", name)
    created = gov.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": version, "target": "Production"},
    )
    assert created["id"] in [r["id"] for r in gov.call("oscar", "GET", "/requests")]
    assert gov.call("mallory", "GET", "/requests") == []
    gov.call("mallory", "GET", "/requests/{request_id}", expect=403, request_id=created["id"])


def test_policy_whoami_and_openapi(gov: GovServer) -> None:
    document = gov.call("oscar", "GET", "/policy")
    assert document["mode"] == "enforce"
    assert document["origin"].startswith("file:")
    assert document["policy"]["gates"]["production"]["approvals"]["required"] == 2

    me = gov.call("dave", "GET", "/whoami")
    assert (me["user"], me["groups"]) == ("dave", ["release-managers"])

    spec = gov.spec()
    prefix = "/api/2.0/mlflow-governance"
    expected = {
        "/requests",
        "/requests/{request_id}",
        "/requests/{request_id}/approve",
        "/requests/{request_id}/reject",
        "/requests/{request_id}/cancel",
        "/audit",
        "/history",
        "/policy",
        "/whoami",
        "/openapi.json",
        "/check",
        "/promote",
        "/rollback",
        "/audit/export",
        "/audit/verify",
        "/audit/checkpoint",
        "/audit/reconcile",
        "/audit/retain",
        "/policy/explain",
        "/events",
        "/events/retry",
        "/gitops/render",
    }
    assert set(spec["paths"]) == {prefix + path for path in expected}
    assert spec["components"]["securitySchemes"]["basicAuth"]["scheme"] == "basic"


def test_mlflow_ui_ajax_routes_surface_refusals_as_403(gov: GovServer) -> None:
    name = "api-ui-alias"
    version = register(gov, "alice", name, stage=None)
    # The call MLflow's web UI makes when an alias is added on the model page.
    response = gov.rest(
        "carol",
        "POST",
        "/ajax-api/2.0/mlflow/registered-models/alias",
        json={"name": name, "alias": "champion", "version": str(version)},
    )
    assert response.status_code == 403
    body = response.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    assert "Refused: carol" in body["message"] and "Request #" in body["message"]
    # Not gated, granted by the policy: basic-auth's own READ default does not stand in the
    # way of a registry write the policy allows.
    ok = gov.rest(
        "carol",
        "POST",
        "/ajax-api/2.0/mlflow/registered-models/alias",
        json={"name": name, "alias": "challenger", "version": str(version)},
    )
    assert ok.status_code == 200, ok.text
    listed = gov.rest("mallory", "GET", "/ajax-api/2.0/mlflow/registered-models/search")
    assert listed.status_code == 200 and listed.json().get("registered_models") is None


def test_basic_auth_still_governs_experiments_and_users(gov: GovServer) -> None:
    created = gov.rest(
        "alice", "POST", "/api/2.0/mlflow/experiments/create", json={"name": "alice-experiment"}
    )
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    hijack = gov.rest(
        "carol",
        "POST",
        "/api/2.0/mlflow/experiments/update",
        json={"experiment_id": experiment_id, "new_name": "carol-now"},
    )
    assert hijack.status_code == 403
    not_admin = gov.rest(
        "alice",
        "POST",
        "/api/2.0/mlflow/users/create",
        json={"username": "eve", "password": password_of("eve")},
    )
    assert not_admin.status_code == 403
    wrong = gov.session(None).get(
        f"{gov.url}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
        auth=("alice", "not-her-password"),
        timeout=60,
    )
    assert wrong.status_code == 401
