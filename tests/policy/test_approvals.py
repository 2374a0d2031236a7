"""Counting approvals: roles, separation of duties, expiry, duplicates and rollbacks.

The team's production gate needs 2 approvals from role approver (release-managers: dave,
erin), distinct from the requester and the version's creator, expiring after 72h, and 1
approval to roll back.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlflow_governance.policy import (
    ApprovalFact,
    GateReport,
    Policy,
    Subject,
    count_approvals,
    describe_approvals,
    load_policy_text,
    may_approve,
)

MODEL = "fraud-detector"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def approval(who: str, hours_ago: float = 1, groups: frozenset[str] = frozenset()) -> ApprovalFact:
    return ApprovalFact(who, groups, NOW - timedelta(hours=hours_ago))


def report(policy: Policy, *approvals: ApprovalFact, **kwargs: object) -> GateReport:
    options: dict[str, object] = {"requester": "carol", "creator": "alice", "now": NOW}
    options.update(kwargs)
    return count_approvals(
        policy,
        policy.gates["production"],
        MODEL,
        approvals,
        **options,  # type: ignore[arg-type]
    )


class TestCountApprovals:
    def test_two_release_managers_satisfy_the_gate(self, team: Policy) -> None:
        result = report(team, approval("dave", 5), approval("erin", 2))
        assert result == GateReport(
            required=2, valid=2, approvers=("dave", "erin"), discarded=(), satisfied=True
        )
        assert result.missing == 0

    def test_one_approval_is_not_enough(self, team: Policy) -> None:
        result = report(team, approval("dave"))
        assert (result.valid, result.satisfied, result.missing) == (1, False, 1)

    def test_no_approvals(self, team: Policy) -> None:
        assert report(team) == GateReport(2, 0, (), (), False)

    def test_only_holders_of_an_approver_role_count(self, team: Policy) -> None:
        result = report(team, approval("dave"), approval("oscar"), approval("admin"))
        assert result.approvers == ("dave",)
        assert result.discarded == (
            ("oscar", "not an approver: holds none of role approver on model fraud-detector"),
            ("admin", "not an approver: holds none of role approver on model fraud-detector"),
        )

    def test_header_groups_at_approval_time_count(self, team: Policy) -> None:
        outsider = approval("zoe", groups=frozenset({"release-managers"}))
        assert report(team, approval("dave"), outsider).satisfied

    def test_the_requester_may_not_approve(self, team: Policy) -> None:
        result = report(team, approval("dave"), approval("erin"), requester="erin")
        assert result.approvers == ("dave",)
        assert result.discarded == (
            ("erin", "is the requester; the gate requires a different approver"),
        )

    def test_the_version_creator_may_not_approve(self, team: Policy) -> None:
        result = report(team, approval("dave"), approval("erin"), creator="dave")
        assert result.approvers == ("erin",)
        assert result.discarded == (
            ("dave", "created the version; the gate requires a different approver"),
        )

    def test_an_unknown_creator_excludes_nobody(self, team: Policy) -> None:
        assert report(team, approval("dave"), approval("erin"), creator=None).satisfied

    def test_approvals_expire(self, team: Policy) -> None:
        result = report(team, approval("dave", hours_ago=80), approval("erin", hours_ago=71))
        assert result.approvers == ("erin",)
        assert result.discarded == (("dave", "expired: given 3d8h ago, approvals expire after 3d"),)

    def test_an_approval_exactly_at_the_limit_still_counts(self, team: Policy) -> None:
        assert report(team, approval("dave", 72), approval("erin", 72)).satisfied

    def test_one_approval_per_approver(self, team: Policy) -> None:
        result = report(team, approval("dave", 3), approval("dave", 2), approval("dave", 1))
        assert (result.valid, result.approvers) == (1, ("dave",))
        assert [why for _, why in result.discarded] == [
            "duplicate: an approval by the same person already counts"
        ] * 2

    def test_a_fresh_approval_counts_after_an_expired_one(self, team: Policy) -> None:
        result = report(team, approval("dave", 100), approval("dave", 1), approval("erin"))
        assert result.satisfied
        assert result.discarded[0][1].startswith("expired")

    def test_a_rollback_needs_rollback_approvals(self, team: Policy) -> None:
        result = report(team, approval("dave"), rollback=True)
        assert (result.required, result.satisfied) == (1, True)

    def test_a_rollback_defaults_to_the_normal_count(self, strict: Policy) -> None:
        gate = strict.gates["staging"]
        result = count_approvals(
            strict, gate, MODEL, [], requester="a", creator="b", now=NOW, rollback=True
        )
        assert result.required == 2

    def test_naive_times_are_taken_as_utc(self, team: Policy) -> None:
        naive = ApprovalFact("dave", frozenset(), datetime(2025, 6, 1, 11, 0))
        result = report(team, naive, approval("erin"), now=NOW.replace(tzinfo=None))
        assert result.satisfied

    def test_a_gate_without_approver_roles_accepts_roles_granting_approve(self) -> None:
        policy = load_policy_text(
            """
version: 1
roles:
  gatekeeper: ["approve:production"]
  boss: ["*"]
  other: ["approve:staging"]
bindings:
  - {role: gatekeeper, principals: ["user:g1"]}
  - {role: boss, principals: ["user:b1"]}
  - {role: other, principals: ["user:o1"]}
gates:
  production:
    targets: {stages: [Production]}
    approvals: {required: 2}
  staging:
    targets: {stages: [Staging]}
"""
        )
        result = report(policy, approval("g1"), approval("b1"), approval("o1"))
        assert result.approvers == ("g1", "b1")
        assert result.discarded == (
            (
                "o1",
                "not an approver: holds none of roles boss or gatekeeper on model fraud-detector",
            ),
        )

    def test_approver_roles_must_cover_the_model(self) -> None:
        policy = load_policy_text(
            """
version: 1
roles: {approver: [read]}
bindings:
  - {role: approver, principals: ["user:a", "user:b"], models: ["churn-*"]}
gates:
  production:
    targets: {stages: [Production]}
    approvals: {required: 1, approver_roles: [approver]}
"""
        )
        assert not report(policy, approval("a")).satisfied


class TestDescribeApprovals:
    def test_what_is_missing(self, team: Policy) -> None:
        gate = team.gates["production"]
        assert describe_approvals(team, gate, report(team)) == (
            "needs 2 approvals from role approver, 0 so far"
        )
        assert describe_approvals(team, gate, report(team, approval("dave"))) == (
            "needs 2 approvals from role approver, 1 so far"
        )
        done = report(team, approval("dave"), approval("erin"))
        assert describe_approvals(team, gate, done) == "has 2 of 2 required approvals"

    def test_a_single_approval(self, team: Policy) -> None:
        gate = team.gates["production"]
        rollback = report(team, rollback=True)
        assert describe_approvals(team, gate, rollback) == (
            "needs 1 approval from role approver, 0 so far"
        )


class TestMayApprove:
    @pytest.mark.parametrize("user", ["dave", "erin"])
    def test_release_managers_may(self, team: Policy, user: str) -> None:
        decision = may_approve(team, team.gates["production"], MODEL, Subject(user))
        assert decision.allowed
        assert decision.rule == "bindings[2] (role approver)"

    def test_others_may_not(self, team: Policy) -> None:
        decision = may_approve(team, team.gates["production"], MODEL, Subject("carol"))
        assert decision.refused
        assert decision.hint == "Ask for role approver on model 'fraud-detector'."
