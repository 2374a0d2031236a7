"""Rollback restores the previous holder of a stage or alias, as the audit log tells it.

Under team.yaml (``rollback_approvals: 1``, ``break_glass_roles: [admin]``): fraud
versions 1 then 2 were promoted to Production and @champion (seeded before the policy,
so the audit history holds both moves).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.workflow import backdate
from tests.workflow.conftest import Registry

PASSED = {"validation_status": "passed"}


@pytest.fixture
def served(reg: Registry) -> Registry:
    for _ in range(2):
        reg.seed("fraud", tags=PASSED, stages=["Staging", "Production"], aliases=["champion"])
    reg.use_policy("team")
    assert reg.stages("fraud") == {1: "Archived", 2: "Production"}
    return reg


def test_rollback_of_a_stage_waits_for_its_approval(served: Registry) -> None:
    data = served.cli.json(
        "carol", "rollback", "fraud", "--stage", "Production", "-m", "p99 up", exit_code=3
    )
    assert (data["status"], data["version"], data["target"]) == ("requested", 1, "Production")
    request = data["request"]
    assert (request["kind"], request["state"], request["comment"]) == (
        "rollback",
        "pending",
        "p99 up",
    )
    assert request["needs"] == "needs 1 approval from role approver, 0 so far"
    assert served.stages("fraud") == {1: "Archived", 2: "Production"}
    # One approval (rollback_approvals: 1, not 2) restores version 1, from Archived.
    approved = served.cli.json("dave", "approve", str(request["id"]))
    assert (approved["state"], approved["applied_by"]) == ("applied", "dave")
    assert served.stages("fraud") == {1: "Production", 2: "Archived"}
    last = served.cli.json("admin", "history", "fraud")[-2:]
    assert [(e["version"], e["after"], e["request_id"]) for e in last] == [
        (1, "Production", request["id"]),
        (2, "Archived", request["id"]),
    ]
    served.assert_explained("fraud")


def test_rollback_of_an_alias(served: Registry) -> None:
    data = served.run("carol", lambda: served.gov.rollback("fraud", alias="champion"))
    assert (data["status"], data["version"], data["target"]) == ("requested", 1, "@champion")
    served.run("erin", lambda: served.gov.approve(data["request"]["id"]))
    assert served.alias("fraud", "champion") == 1
    assert served.stages("fraud") == {1: "Archived", 2: "Production"}  # the alias alone moved
    served.assert_explained("fraud")


def test_break_glass_rollback_applies_at_once_and_leaves_a_review(served: Registry) -> None:
    result = served.cli("admin", "rollback", "fraud", "--stage", "Production", "-m", "incident 7")
    assert result.exit_code == 0, result.output
    assert "Rolled back: fraud Production is version 1 again." in result.stdout
    assert served.stages("fraud") == {1: "Production", 2: "Archived"}
    (review,) = served.cli.json("dave", "requests", "--state", "pending")
    assert (review["kind"], review["requester"], review["version"]) == ("review", "admin", 1)
    assert review["needs"] == "needs 2 approvals from role approver, 0 so far"
    moved = served.audit(action="transition_model_version_stage", version=1)[-1]
    assert moved["details"]["break_glass"] is True and moved["request_id"] == review["id"]
    # The review stays open until approved: no rejecting, cancelling or expiring it...
    rid = review["id"]
    for refused in (
        served.fails("dave", lambda: served.gov.reject(rid, "should have waited")),
        served.fails("admin", lambda: served.gov.cancel(rid)),
    ):
        assert refused.error_code == "RESOURCE_CONFLICT"
        assert "stays pending until approved" in refused.message
        assert "mlflow-governance rollback fraud" in refused.message
    backdate(served.store, "requests", "created_at", timedelta(days=30), id=rid)
    assert served.cli.json("dave", "requests", "--state", "expired") == []
    # ...and approving it changes nothing in the registry.
    served.cli.json("dave", "approve", str(review["id"]))
    assert served.cli.json("erin", "approve", str(review["id"]))["state"] == "approved"
    assert served.stages("fraud") == {1: "Production", 2: "Archived"}
    assert served.cli.json("dave", "requests", "--state", "pending") == []
    served.assert_explained("fraud")


def test_rollback_skips_deleted_holders(served: Registry) -> None:
    served.seed("fraud", tags=PASSED, stages=["Staging", "Production"])  # version 3
    # Version 2 (Archived, still @champion) goes: the alias first (protect_delete).
    served.run("admin", lambda: served.mlflow.delete_registered_model_alias("fraud", "champion"))
    served.run("admin", lambda: served.mlflow.delete_model_version("fraud", 2))
    data = served.run("admin", lambda: served.gov.rollback("fraud", stage="Production"))
    assert (data["status"], data["version"]) == ("applied", 1)
    assert served.stages("fraud") == {1: "Production", 3: "Archived"}
    served.assert_explained("fraud")


def test_nothing_to_roll_back_to(served: Registry) -> None:
    served.seed("churn", tags=PASSED, stages=["Staging", "Production"])
    result = served.cli("carol", "rollback", "churn", "--stage", "Production")
    assert result.exit_code == 1
    assert (
        "The audit log shows no earlier holder of Production for model 'churn' (current: 1)"
        in result.stderr
    )
    refused = served.cli.refused("oscar", "rollback", "fraud", "--alias", "champion")
    assert refused.startswith("Refused: oscar may not request promotion on model 'fraud' version 1")
    assert served.cli("carol", "rollback", "fraud").exit_code == 2  # neither --stage nor --alias
