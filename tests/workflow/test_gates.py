"""Several gates in front of one target: each must pass (policies/two_gates.yaml).

Production is held by a checks-only gate (quality: tag qa=ok) and a sign-off gate (two
approvals); for bank-* models an audit gate (one approval, manual apply) joins them.
"""

from __future__ import annotations

import pytest

from tests.workflow import assert_refused, request_id_in
from tests.workflow.conftest import Registry

QA = {"qa": "ok"}


@pytest.fixture
def gates(reg: Registry) -> Registry:
    reg.seed("m", creator="max", tags=QA)  # 1: passes quality
    reg.seed("m", creator="max")  # 2: no qa tag
    reg.seed("bank-x", creator="max", tags=QA)
    reg.use_policy("two_gates")
    return reg


def _move(reg: Registry, user: str, model: str, version: int) -> str:
    refused = reg.fails(
        user, lambda: reg.mlflow.transition_model_version_stage(model, version, "Production")
    )
    return assert_refused(
        refused,
        actor=user,
        action="transition:Production",
        rule="gates.signoff",
        allow="is open. Follow it with",
    )


def test_a_passing_checks_only_gate_does_not_open_the_other(gates: Registry) -> None:
    # quality passes for version 1, but signoff still wants its two approvals.
    message = _move(gates, "mia", "m", 1)
    assert "gate signoff: needs 2 approvals from role signer, 0 so far" in message
    rid = request_id_in(message)
    assert gates.stages("m")[1] == "None"
    gates.run("ann", lambda: gates.gov.approve(rid))
    assert gates.run("abe", lambda: gates.gov.approve(rid))["state"] == "applied"
    assert gates.stages("m")[1] == "Production"
    gates.assert_explained("m")


def test_approvals_of_one_gate_do_not_pass_the_checks_of_another(gates: Registry) -> None:
    rid = int(gates.run("mia", lambda: gates.gov.request("m", 2, "Production"))["id"])
    gates.run("ann", lambda: gates.gov.approve(rid))
    approved = gates.run("abe", lambda: gates.gov.approve(rid))
    assert approved["state"] == "approved"
    assert "check tag qa fails (expected ok, got missing)" in approved["apply_error"]
    refused = gates.fails(
        "mia", lambda: gates.mlflow.transition_model_version_stage("m", 2, "Production")
    )
    assert_refused(
        refused,
        actor="mia",
        action="transition:Production",
        rule="gates.quality",
        allow=f"Request #{rid} is approved but cannot apply yet",
    )
    assert gates.stages("m")[2] == "None"


def test_a_checks_only_gate_alone_lets_a_passing_version_through(gates: Registry) -> None:
    gates.run("mia", lambda: gates.mlflow.set_registered_model_alias("m", "live-1", 1))
    assert gates.alias("m", "live-1") == 1
    refused = gates.fails("mia", lambda: gates.mlflow.set_registered_model_alias("m", "live-1", 2))
    assert_refused(
        refused, actor="mia", action="alias:live-1", rule="gates.quality", allow="is open"
    )
    assert "gate quality: check tag qa fails (expected ok, got missing)" in refused.message


def test_a_gate_for_some_models_joins_the_others(gates: Registry) -> None:
    rid = int(gates.run("mia", lambda: gates.gov.request("bank-x", 1, "Production"))["id"])
    gates.run("ann", lambda: gates.gov.approve(rid))
    signed = gates.run("abe", lambda: gates.gov.approve(rid))
    # signoff is satisfied; audit still wants its approval (roles granting approve:audit).
    assert signed["state"] == "pending"
    assert signed["needs"] == "gate audit: needs 1 approval from roles admin or auditor, 0 so far"
    audited = gates.run("ivy", lambda: gates.gov.approve(rid))
    assert audited["state"] == "approved"  # audit says apply: manual
    assert gates.stages("bank-x")[1] == "None"
    assert gates.cli.json("mia", "promote", "bank-x", "1", "--to", "Production")["status"] == (
        "applied"
    )
    assert gates.stages("bank-x")[1] == "Production"
    # Outside bank-*, ivy approves nothing: audit is not in front of model m.
    other = int(gates.run("mia", lambda: gates.gov.request("m", 1, "Production"))["id"])
    refused = gates.fails("ivy", lambda: gates.gov.approve(other))
    assert refused.error_code == "PERMISSION_DENIED" and "holds none of role signer" in (
        refused.message
    )


def test_break_glass_needs_a_break_glass_role_of_every_gate(gates: Registry) -> None:
    # root (admin) holds the break-glass role of quality and signoff, not of audit.
    assert gates.run(
        "root", lambda: gates.mlflow.transition_model_version_stage("m", 2, "Production")
    )
    assert gates.stages("m")[2] == "Production"
    (review,) = gates.cli.json("ann", "requests", "--state", "pending")
    assert (review["kind"], review["requester"]) == ("review", "root")
    refused = gates.fails(
        "root", lambda: gates.mlflow.transition_model_version_stage("bank-x", 1, "Production")
    )
    assert refused.error_code == "PERMISSION_DENIED" and "gate audit" in refused.message
    assert gates.stages("bank-x")[1] == "None"
