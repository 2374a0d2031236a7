"""Promotion requests under the tutorial's team policy and the lab policy of this folder.

One approval per approver, separation of duties, expiry (timestamps moved back in the
database, no sleeping), superseding, rejection, cancellation, manual apply and
``promote --wait``. Each test starts from versions seeded without a policy, so the
story told is only the workflow's.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from mlflow_governance.clock import utc_now
from mlflow_governance.workflow import request_rows as rq
from mlflow_governance.workflow.request_rows import Target
from tests.workflow import assert_refused, backdate, request_id_in
from tests.workflow.conftest import Registry

PASSED = {"validation_status": "passed"}


@pytest.fixture
def team(reg: Registry) -> Registry:
    """team.yaml; fraud versions 1 and 2 by alice, in Staging, validated."""
    for _ in range(2):
        reg.seed("fraud", tags=PASSED, stages=["Staging"])
    reg.use_policy("team")
    return reg


@pytest.fixture
def lab(reg: Registry) -> Registry:
    """lab.yaml; exp-1 versions 1 and 2 by ana (no stage)."""
    for _ in range(2):
        reg.seed("exp-1", creator="ana")
    reg.use_policy("lab")
    return reg


def _open(reg: Registry, user: str, model: str, version: int, to: str) -> int:
    return int(reg.run(user, lambda: reg.gov.request(model, version, to))["id"])


def test_one_approval_per_approver(team: Registry) -> None:
    rid = _open(team, "carol", "fraud", 1, "Production")
    assert team.run("dave", lambda: team.gov.approve(rid))["state"] == "pending"
    again = team.fails("dave", lambda: team.gov.approve(rid))
    assert_refused(
        again,
        actor="dave",
        action="approve request",
        rule="gates.production.approvals",
        allow="Another approver has to approve this request",
    )
    assert "duplicate: an approval by the same person already counts" in again.message
    # A second voice of another kind is not a way around it either.
    flip = team.fails("dave", lambda: team.gov.reject(rid, "changed my mind"))
    assert flip.error_code == "RESOURCE_CONFLICT" and "one voice per approver" in flip.message
    assert team.cli.refused("dave", "approve", str(rid)).startswith("Refused: dave may not")
    request = team.request(rid)
    assert (request["state"], [a["approver"] for a in request["approvals"]]) == (
        "pending",
        ["dave"],
    )
    assert team.stages("fraud")[1] == "Staging"


def test_distinct_from_requester_and_a_gate_without_it(lab: Registry) -> None:
    # release: distinct_from [requester]; lea may not approve her own request.
    rid = _open(lab, "lea", "exp-1", 1, "Production")
    own = lab.fails("lea", lambda: lab.gov.approve(rid))
    assert_refused(
        own,
        actor="lea",
        action="approve request",
        rule="gates.release.approvals",
        allow="Another approver has to approve this request",
    )
    assert "is the requester" in own.message
    assert lab.run("lou", lambda: lab.gov.approve(rid))["state"] == "pending"
    # hotfix names no distinct_from: her own approval counts and applies the move.
    hot = _open(lab, "lea", "exp-1", 2, "@hotfix-1")
    applied = lab.run("lea", lambda: lab.gov.approve(hot))
    assert (applied["state"], applied["applied_by"]) == ("applied", "lea")
    assert lab.alias("exp-1", "hotfix-1") == 2


def test_a_stale_request_expires(team: Registry) -> None:
    rid = _open(team, "carol", "fraud", 1, "Production")
    assert backdate(team.store, "requests", "created_at", timedelta(days=4), id=rid) == 1
    listed = team.cli.json("carol", "requests", "--state", "expired")
    assert [(r["id"], r["state"]) for r in listed] == [(rid, "expired")]
    late = team.fails("dave", lambda: team.gov.approve(rid))
    assert late.error_code == "RESOURCE_CONFLICT" and "expired" in late.message
    (row,) = team.audit(action="expire_request")
    assert (row["actor"], row["request_id"]) == ("mlflow-governance", rid)
    # The next stock attempt opens a fresh request rather than reviving the old one.
    moved = team.fails(
        "carol", lambda: team.mlflow.transition_model_version_stage("fraud", 1, "Production")
    )
    assert request_id_in(moved.message) != rid


def test_old_approvals_stop_counting(team: Registry) -> None:
    rid = _open(team, "carol", "fraud", 1, "Production")
    team.run("dave", lambda: team.gov.approve(rid))
    backdate(team.store, "approvals", "time", timedelta(days=4), request_id=rid)
    after = team.run("erin", lambda: team.gov.approve(rid))
    assert after["state"] == "pending" and "1 so far" in after["needs"]
    assert "dave's approval does not count (expired: given 4d" in after["needs"]
    assert "approvals expire after 3d" in after["needs"]
    assert team.stages("fraud")[1] == "Staging"


def test_an_approved_request_expires_with_its_approvals(lab: Registry) -> None:
    # stable: apply manual, approvals expire after 1d. Approved, then never promoted.
    rid = _open(lab, "ana", "exp-1", 1, "@stable")
    for lead in ("lea", "lou"):
        lab.run(lead, lambda: lab.gov.approve(rid))
    assert lab.request(rid)["state"] == "approved"
    backdate(lab.store, "approvals", "time", timedelta(hours=25), request_id=rid)
    (row,) = lab.cli.json("ana", "requests", "--state", "expired")
    assert (row["id"], row["closed_reason"]) == (rid, "its approvals are older than 1d")
    (audited,) = lab.audit(action="expire_request")
    assert audited["request_id"] == rid and "expired" in audited["reason"]
    # Promoting now opens a fresh request instead of applying stale approvals.
    later = lab.cli("ana", "promote", "exp-1", "1", "--to", "@stable")
    assert later.exit_code == 3 and lab.alias("exp-1", "stable") is None


def test_a_newer_request_supersedes_the_older(team: Registry) -> None:
    first = _open(team, "carol", "fraud", 1, "Production")
    champion = _open(team, "carol", "fraud", 1, "@champion")  # another target: untouched
    second = _open(team, "alice", "fraud", 2, "Production")
    old = team.request(first)
    assert (old["state"], old["closed_reason"]) == (
        "superseded",
        f"superseded by request #{second}",
    )
    assert team.request(champion)["state"] == "pending"
    (row,) = team.audit(action="supersede_request")
    assert (row["request_id"], row["details"]["superseded_by"]) == (first, second)
    late = team.fails("dave", lambda: team.gov.approve(first))
    assert late.error_code == "RESOURCE_CONFLICT" and "superseded" in late.message


def test_applying_a_request_supersedes_any_other_open_one(team: Registry) -> None:
    rid = _open(team, "alice", "fraud", 2, "Production")
    # Two requests opened at the same moment can both stay open (neither saw the other):
    # insert the second as such a race leaves it.
    _, bound = team.store.raw_identity("fraud", 1)
    with team.store.engine.begin() as conn:
        racer = rq.insert(
            conn,
            kind="promotion",
            model="fraud",
            version=1,
            target=Target("stage", "Production"),
            gate="production",
            state="pending",
            requester="carol",
            comment=None,
            archive_existing=True,
            now=utc_now(),
            identity=bound,
        )
    team.run("dave", lambda: team.gov.approve(rid))
    assert team.run("erin", lambda: team.gov.approve(rid))["state"] == "applied"
    other = team.request(racer)
    assert (other["state"], other["closed_reason"]) == (
        "superseded",
        f"superseded by request #{rid}",
    )
    assert team.stages("fraud") == {1: "Staging", 2: "Production"}
    # Audited in the move's own transaction, right after its transition rows.
    rows = team.audit(model="fraud")
    moved = max(i for i, r in enumerate(rows) if r["action"] == "transition_model_version_stage")
    superseded = rows[moved + 1]
    assert (superseded["action"], superseded["request_id"]) == ("supersede_request", racer)
    assert superseded["details"]["superseded_by"] == rid
    assert superseded["time"] == rows[moved]["time"]


def test_reject_with_a_comment(team: Registry) -> None:
    rid = _open(team, "carol", "fraud", 1, "Production")
    not_approver = team.fails("carol", lambda: team.gov.reject(rid, "no"))
    assert_refused(
        not_approver,
        actor="carol",
        action="reject request",
        rule="default-deny",
        allow="Ask for role approver",
    )
    why = "accuracy regressed on the holdout set"
    data = team.cli.json("dave", "reject", str(rid), "-m", why)
    assert (data["state"], data["closed_by"], data["closed_reason"]) == ("rejected", "dave", why)
    assert data["rejections"] == [
        {"approver": "dave", "decision": "reject", "comment": why, "time": data["updated_at"]}
    ]
    (row,) = team.audit(action="reject_request", decision="allow")
    assert (row["actor"], row["details"]["comment"]) == ("dave", why)
    closed = team.fails("erin", lambda: team.gov.approve(rid))
    assert closed.error_code == "RESOURCE_CONFLICT"
    assert team.stages("fraud")[1] == "Staging"


def test_cancel_by_the_requester_only(team: Registry) -> None:
    rid = _open(team, "carol", "fraud", 1, "Production")
    other = team.fails("alice", lambda: team.gov.cancel(rid))
    assert_refused(
        other,
        actor="alice",
        action="cancel request",
        rule="default-deny",
        allow="Ask for role admin",
    )
    assert "only the requester (carol) or a policy admin may cancel" in other.message
    assert team.request(rid)["state"] == "pending"
    data = team.cli.json("carol", "cancel", str(rid), "-m", "wrong version")
    assert (data["state"], data["closed_by"], data["closed_reason"]) == (
        "cancelled",
        "carol",
        "wrong version",
    )
    again = team.fails("carol", lambda: team.gov.cancel(rid))
    assert again.error_code == "RESOURCE_CONFLICT"
    # A policy admin may cancel anyone's request.
    second = _open(team, "carol", "fraud", 2, "Production")
    assert team.run("admin", lambda: team.gov.cancel(second))["state"] == "cancelled"


def test_manual_apply_needs_promote(lab: Registry) -> None:
    rid = _open(lab, "ana", "exp-1", 1, "@stable")
    lab.run("lea", lambda: lab.gov.approve(rid))
    approved = lab.run("lou", lambda: lab.gov.approve(rid))
    assert approved["state"] == "approved" and lab.alias("exp-1", "stable") is None
    refused = lab.cli.refused("ben", "promote", "exp-1", "1", "--to", "@stable")
    assert f"request #{rid} is approved but ben" in refused and "(rule: default-deny)" in refused
    data = lab.cli.json("ana", "promote", "exp-1", "1", "--to", "@stable")
    assert data["status"] == "applied" and lab.alias("exp-1", "stable") == 1
    assert (lab.request(rid)["state"], lab.request(rid)["applied_by"]) == ("applied", "ana")
    # rob holds alias:stable: he may apply someone else's approved request.
    other = _open(lab, "ana", "exp-1", 2, "@stable")
    for lead in ("lea", "lin"):
        lab.run(lead, lambda: lab.gov.approve(other))
    assert lab.cli.json("rob", "promote", "exp-1", "2", "--to", "@stable")["status"] == "applied"
    assert lab.request(other)["applied_by"] == "rob" and lab.alias("exp-1", "stable") == 2
    lab.assert_explained("exp-1")


def test_promote_wait_returns_at_once_when_approved(lab: Registry) -> None:
    rid = _open(lab, "ana", "exp-1", 1, "@stable")
    for lead in ("lea", "lou"):
        lab.run(lead, lambda: lab.gov.approve(rid))
    result = lab.cli("ana", "promote", "exp-1", "1", "--to", "@stable", "--wait", "--timeout", "5")
    assert result.exit_code == 0, result.output
    assert "exp-1 version 1 is now at @stable" in result.stdout
    assert lab.alias("exp-1", "stable") == 1
    # Still pending and no time left to wait: it says what is missing instead of hanging.
    pending = lab.cli("ana", "promote", "exp-1", "2", "--to", "@stable", "--wait", "--timeout", "0")
    assert pending.exit_code == 4  # a timeout, told apart from a refusal (1)
    assert "Timed out after 0s waiting for request #" in pending.stderr
    assert "needs 2 approvals from role lead, 0 so far" in pending.stderr
    # Without --wait a pending promotion exits 3 and names the request.
    later = lab.cli("ana", "promote", "exp-1", "2", "--to", "@stable")
    assert later.exit_code == 3 and "is pending" in later.stdout


def test_requests_list_only_readable_models(lab: Registry) -> None:
    lab.seed("secret", creator="sre")
    _open(lab, "ana", "exp-1", 1, "@stable")
    lab.run("sre", lambda: lab.gov.request("secret", 1, "@stable"))
    assert {r["model"] for r in lab.cli.json("lea", "requests")} == {"exp-1", "secret"}
    assert {r["model"] for r in lab.cli.json("ana", "requests")} == {"exp-1"}
