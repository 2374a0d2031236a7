"""Events are written to the outbox with their change, in its transaction, on every backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow.exceptions import MlflowException

from mlflow_governance.audit.event_catalog import event_id
from mlflow_governance.audit.tables import audit_log, outbox


def _events(sql: sa.Engine) -> list[dict[str, Any]]:
    with sql.connect() as conn:
        rows = conn.execute(sa.select(outbox).order_by(outbox.c.id)).mappings().all()
    return [{**row, "data": json.loads(row["data"])} for row in rows]


def test_each_change_announces_its_events(logged: int, sql: sa.Engine) -> None:
    events = _events(sql)
    assert [(e["type"], e["model"], e["version"]) for e in events] == [
        ("model_version.registered", "fraud", 1),
        ("model_version.registered", "fraud", 2),
        ("model_version.transitioned", "fraud", 1),
        ("alias.set", "fraud", 1),
    ]
    moved = events[2]["data"]
    assert (moved["actor"], moved["from"], moved["to"]) == ("bob", "None", "Staging")
    assert events[3]["data"]["alias"] == "champion"
    assert {e["state"] for e in events} == {"pending"}
    # The id is derived from the audit row: the same row always gives the same id.
    with sql.connect() as conn:
        hashes = dict(conn.execute(sa.select(audit_log.c.id, audit_log.c.hash)).all())
    for event in events:
        assert event["event_id"] == event_id(hashes[event["audit_id"]], event["type"])


def test_a_refusal_announces_access_denied_and_nothing_else(
    store: Any, sql: sa.Engine, as_user: Callable[[str], None], tmp_path: Any, monkeypatch: Any
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nmode: enforce\nroles:\n  admin: ['*']\n"
        "bindings:\n  - role: admin\n    principals: ['user:alice']\n"
    )
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", str(policy))
    as_user("mallory")
    with pytest.raises(MlflowException):
        store.create_registered_model("fraud")
    events = _events(sql)
    assert [e["type"] for e in events] == ["access.denied"]
    assert events[0]["data"]["actor"] == "mallory"
    assert events[0]["data"]["action"] == "create_registered_model"


def test_archiving_on_the_way_is_not_an_applied_promotion() -> None:
    from mlflow_governance.audit.event_catalog import events_of

    base = {
        "id": 16,
        "actor": "erin",
        "identity_source": "server",
        "action": "transition_model_version_stage",
        "decision": "allow",
        "model": "fraud",
        "version": 1,
        "stage_before": "Production",
        "stage_after": "Archived",
        "request_id": 2,
    }
    side = events_of({**base, "details": '{"side_effect": true}'})
    assert [kind for kind, _ in side] == ["model_version.transitioned"]
    own = events_of({**base, "stage_after": "Production", "details": '{"via": "workflow"}'})
    assert [kind for kind, _ in own] == ["model_version.transitioned", "promotion.applied"]


def test_a_request_event_says_what_approvers_are_asked_for() -> None:
    from mlflow_governance.audit.event_catalog import events_of
    from mlflow_governance.events.sinks.slack import message

    row = {
        "id": 3,
        "actor": "carol",
        "action": "request_promotion",
        "decision": "allow",
        "model": "fraud-detector",
        "version": 7,
        "request_id": 12,
        "details": '{"target": "Production", "approvals_missing": 1, '
        '"approver_roles": ["approver"], "gate": "production"}',
    }
    [(kind, data)] = events_of(row)
    assert kind == "promotion.requested"
    assert (data["approvals_missing"], data["approver_roles"]) == (1, ["approver"])
    text = message({"type": kind, "data": data})
    assert text.startswith("Request #12: fraud-detector v7 → Production needs 1 more approval")
    assert "from approver" in text


def test_opening_a_request_records_what_it_needs(
    store: Any, as_user: Callable[[str], None], sql: sa.Engine, monkeypatch: Any
) -> None:
    from mlflow_governance.identity import SOURCE_ASSERTED, Identity
    from mlflow_governance.workflow.promotion import Workflow
    from mlflow_governance.workflow.request_rows import Target
    from tests.workflow import policy_path

    as_user("alice")
    store.create_registered_model("fraud")
    store.create_model_version("fraud", "s3://models/fraud/1")
    store.transition_model_version_stage("fraud", 1, "Staging", False)
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", policy_path("team"))
    Workflow(store).open_request(
        Identity("carol", SOURCE_ASSERTED), "fraud", 1, Target("stage", "Production")
    )
    requested = [e for e in _events(sql) if e["type"] == "promotion.requested"]
    assert requested[0]["data"]["approvals_missing"] == 2
    assert requested[0]["data"]["approver_roles"] == ["approver"]
