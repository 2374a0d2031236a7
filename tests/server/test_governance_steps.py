"""The pipeline steps and admin routes over REST, tried as an ordinary account would.

``check``, ``promote``, ``rollback``, ``audit/export|verify|checkpoint`` and ``policy``
(apply, explain) on the shared SQLite governance server: each answers in its documented
shape for a caller with the right, and refuses (403, audited) or rejects (400) everyone
else. A move held back by a gate through the stock client names the request's page.
"""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from tests.server.conftest import POLICIES, GovServer, register

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("governance-sqlite")]


@pytest.fixture
def gov(sqlite_server: GovServer) -> GovServer:
    return sqlite_server


def _denials(gov: GovServer, actor: str, action: str) -> int:
    rows = gov.call(
        "admin",
        "GET",
        "/audit",
        params={"actor": actor, "action": action, "decision": "deny", "limit": 5000},
    )
    return len(rows)


def test_check_answers_for_readers_only(gov: GovServer) -> None:
    name = "steps-check"
    version = register(gov, "alice", name)
    params = {"model": name, "version": version, "gate": "production"}
    result = gov.call("carol", "GET", "/check", params=params)
    assert (result["passed"], result["gate"], result["version"]) == (True, "production", version)
    assert {c["name"] for c in result["checks"]} >= {"tag validation_status"}
    before = _denials(gov, "mallory", "check_gate")
    gov.call("mallory", "GET", "/check", params=params, expect=403)
    assert _denials(gov, "mallory", "check_gate") == before + 1
    unknown = {**params, "gate": "nope"}
    assert (
        "no gate 'nope'"
        in gov.call("carol", "GET", "/check", params=unknown, expect=400)["message"]
    )
    huge = {**params, "version": "99999999999999"}
    gov.call("carol", "GET", "/check", params=huge, expect=400)


def test_promote_applies_what_needs_no_approval_and_opens_the_rest(gov: GovServer) -> None:
    name = "steps-promote"
    version = register(gov, "alice", name, stage=None)
    staged = gov.call(
        "carol", "POST", "/promote", json={"model": name, "version": version, "to": "Staging"}
    )
    assert (staged["status"], staged["request"]) == ("applied", None)
    held = gov.call(
        "carol", "POST", "/promote", json={"model": name, "version": version, "to": "Production"}
    )
    assert held["status"] == "pending" and held["request"]["requester"] == "carol"
    # Asking again returns the same request: the server never waits and never duplicates.
    again = gov.call(
        "carol", "POST", "/promote", json={"model": name, "version": version, "to": "Production"}
    )
    assert again["request"]["id"] == held["request"]["id"]
    with gov.as_user("oscar") as client:
        assert client.get_model_version(name, str(version)).current_stage == "Staging"


@pytest.mark.parametrize(
    ("user", "body", "status"),
    [
        ("mallory", {"to": "Staging"}, 403),  # no binding at all
        ("oscar", {"to": "Staging"}, 403),  # read only
        ("alice", {"to": "Production"}, 201),  # a contributor may ask, not move
        ("carol", {"to": "Nowhere"}, 400),
        ("carol", {"to": "Staging", "version": 2**40}, 400),
        ("carol", {"to": "Staging", "version": True}, 400),
        ("carol", {"to": ["Staging"]}, 400),
    ],
)
def test_promote_cannot_be_talked_around(
    gov: GovServer, user: str, body: dict[str, object], status: int
) -> None:
    name = f"steps-attack-{user}-{abs(hash(str(body))) % 10_000}"
    version = register(gov, "alice", name, stage=None)
    payload = {"model": name, "version": version, **body}
    if status == 201:
        result = gov.call(user, "POST", "/promote", json=payload)
        assert result["status"] == "pending"  # a request, not the move
    else:
        gov.call(user, "POST", "/promote", json=payload, expect=status)
    with gov.as_user("oscar") as client:
        assert client.get_model_version(name, str(version)).current_stage == "None"


def test_rollback_needs_a_previous_holder_and_the_rights(gov: GovServer) -> None:
    name = "steps-rollback"
    register(gov, "alice", name)
    nothing = gov.call(
        "carol", "POST", "/rollback", json={"model": name, "stage": "Staging"}, expect=409
    )
    assert "no earlier holder" in nothing["message"]
    both = {"model": name, "stage": "Staging", "alias": "champion"}
    gov.call("carol", "POST", "/rollback", json=both, expect=400)
    gov.call("mallory", "POST", "/rollback", json={"model": name, "stage": "Staging"}, expect=409)


def test_audit_export_verify_and_checkpoint_need_audit_read(gov: GovServer) -> None:
    for user in ("oscar", "mallory"):
        gov.call(user, "GET", "/audit/export", expect=403)
        gov.call(user, "POST", "/audit/verify", json={}, expect=403)
        gov.call(user, "POST", "/audit/checkpoint", json={}, expect=403)
    checkpoint = gov.call("admin", "POST", "/audit/checkpoint", json={})
    verified = gov.call("admin", "POST", "/audit/verify", json={"checkpoint": checkpoint})
    assert verified["ok"] is True and verified["rows"] >= checkpoint["rows"]
    forged = {**checkpoint, "head_hash": "0" * 64}
    assert gov.call("admin", "POST", "/audit/verify", json={"checkpoint": forged})["ok"] is False
    bad = gov.call("admin", "POST", "/audit/verify", json={"checkpoint": {"rows": "x"}}, expect=400)
    assert "checkpoint rows must be an integer" in bad["message"]
    name = "steps-export"
    register(gov, "alice", name)
    rows = gov.call("dave", "GET", "/audit/export", params={"model": name})
    assert rows and all(row["model"] == name for row in rows)
    text = gov.api("dave", "GET", "/audit/export", params={"model": name, "format": "csv"})
    assert text.status_code == 200 and text.text.startswith("id,")
    assert gov.api("dave", "GET", "/audit/export", params={"format": "xml"}).status_code == 400


def test_policy_apply_is_for_policy_admins(gov: GovServer) -> None:
    text = (POLICIES / "server.yaml").read_text()
    before = _denials(gov, "carol", "policy_apply")
    gov.call("carol", "POST", "/policy", json={"policy": text, "source": "x.yaml"}, expect=403)
    assert _denials(gov, "carol", "policy_apply") == before + 1
    invalid = gov.call(
        "admin", "POST", "/policy", json={"policy": "version: 9", "source": "bad.yaml"}, expect=400
    )
    assert "bad.yaml" in invalid["message"]
    # Over the request body limit (1 MiB, MLFLOW_GOVERNANCE_MAX_BODY_BYTES) before the
    # policy's own size budget is reached.
    gov.call(
        "admin", "POST", "/policy", json={"policy": "x" * 2_000_000, "source": "big"}, expect=413
    )
    applied = gov.call("admin", "POST", "/policy", json={"policy": text, "source": "server.yaml"})
    # The server enforces its MLFLOW_GOVERNANCE_POLICY file: the answer says so.
    assert applied["overridden_by"] and applied["overridden_by"].endswith("server.yaml")
    shown = gov.call("oscar", "GET", "/policy")
    assert shown["source"]["kind"] == "file" and len(shown["source"]["sha256"]) == 64


def test_policy_explain_over_rest(gov: GovServer) -> None:
    data = gov.call("oscar", "GET", "/policy/explain", params={"user": "dave", "model": "anything"})
    assert data["gates"][0]["may_approve"] is True
    gov.call("oscar", "GET", "/policy/explain", params={"user": "dave"}, expect=400)


def test_a_held_move_through_the_stock_client_links_the_request_page(gov: GovServer) -> None:
    name = "steps-link"
    version = register(gov, "alice", name)
    with gov.as_user("carol") as client, pytest.raises(MlflowException) as refused:
        client.transition_model_version_stage(name, str(version), "Production")
    message = refused.value.message
    assert f"{gov.url}/governance/requests/" in message, message
    assert "mlflow-governance approve" not in message


def test_promote_to_where_the_version_is_already_needs_nothing(gov: GovServer) -> None:
    """A re-run pipeline step succeeds without opening a request it would then wait for."""
    name = "steps-already"
    version = register(gov, "alice", name)  # in Staging
    body = {"model": name, "version": version, "to": "Staging"}
    again = gov.call("carol", "POST", "/promote", json=body)
    assert (again["status"], again["request"]) == ("applied", None)
    before = gov.call("oscar", "GET", "/requests", params={"model": name})
    assert before == []
    # Someone who may not read the model learns nothing from it: refused as before.
    gov.call("mallory", "POST", "/promote", json=body, expect=403)
