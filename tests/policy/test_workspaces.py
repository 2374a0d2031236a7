"""Role bindings per MLflow workspace.

platform.yaml: fraud-team (alice, bob) are contributors in workspace ``fraud``;
pricing-team (pia, paul) in workspaces ``pricing-*``; platform (dave, erin) approve in
every workspace; svc-validation is validator everywhere; admin holds ``*`` only in the
``default`` workspace (the one a server without workspaces has).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlflow_governance.policy import (
    ApprovalFact,
    GateReport,
    Policy,
    Subject,
    authorize,
    count_approvals,
    load_policy_text,
    may_approve,
    may_break_glass,
    model_globs_granting,
    permissions_of,
    roles_of,
    tag_write_decision,
)
from tests.policy._support import issues_of, lines

MODEL = "fraud-detector"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

SPLIT = load_policy_text(
    """
version: 1
roles:
  reader: [read]
  approver: [read, "approve:production"]
  validator: [read, edit]
bindings:
  - {role: reader, principals: ["user:*"], models: ["shared-*"]}
  - {role: reader, principals: ["user:ann"], models: ["a-*"], workspaces: [team-a]}
  - {role: reader, principals: ["user:ann"], models: ["*"], workspaces: ["lab-*"]}
  - {role: approver, principals: ["user:amy", "user:ben"], workspaces: [team-a]}
  - {role: approver, principals: ["user:cy"], workspaces: [team-b]}
  - {role: validator, principals: ["user:val"], workspaces: [team-a]}
gates:
  production:
    targets: {stages: [Production]}
    approvals: {required: 2, approver_roles: [approver]}
    checks: {tags: {validated: {value: "yes", set_by: [validator]}}}
"""
)


class TestLoading:
    def test_workspaces_default_to_every_workspace(self, team: Policy, platform: Policy) -> None:
        assert team.bindings[0].workspaces == ("*",)
        assert not team.index.workspace_scoped
        assert platform.bindings[0].workspaces == ("fraud",)
        assert platform.bindings[1].workspaces == ("pricing-*",)
        assert platform.bindings[2].workspaces == ("*",)
        assert platform.index.workspace_scoped

    def test_globs_that_could_match_no_workspace_are_refused(self) -> None:
        issues = issues_of("bad_workspaces")
        assert lines(issues) == {
            "bindings[0].workspaces[0]": 6,
            "bindings[0].workspaces[1]": 6,
            "bindings[0].workspaces[2]": 6,
            "bindings[0].workspaces[3]": 6,
            "bindings[1].workspaces": 9,
            "bindings[2].workspaces": 12,
            "bindings[3].workspace": 15,
        }
        upper, underscore, bracket, short, empty, text, key = issues
        assert upper.message == "'Team-A' is not an MLflow workspace name"
        assert upper.column == 18
        assert underscore.message == "'ml_*' can match no MLflow workspace name"
        assert bracket.message.startswith("bad glob: unbalanced '['")
        assert short.message == "'x' is not an MLflow workspace name"
        assert empty.message.startswith("an empty list makes the binding grant nothing")
        assert text.message == "expected a list of workspace globs, got the text 'team-a'"
        assert key.message == "unknown key 'workspace'; did you mean 'workspaces'?"


class TestAuthorize:
    def test_a_binding_applies_in_its_workspaces_only(self, platform: Policy) -> None:
        assert authorize(platform, Subject("alice", workspace="fraud"), "register", MODEL).granted
        assert authorize(platform, Subject("pia", workspace="pricing-eu"), "edit", "p").granted
        for workspace in ("pricing-eu", "fraud-2", "default", None):
            subject = Subject("alice", workspace=workspace)
            assert authorize(platform, subject, "register", MODEL).refused
        assert authorize(platform, Subject("pia", workspace="pricing"), "edit", "p").refused

    def test_no_workspace_means_the_default_workspace(self, platform: Policy) -> None:
        assert authorize(platform, Subject("admin"), "delete", MODEL).granted
        assert authorize(platform, Subject("admin", workspace="default"), "delete", MODEL).granted
        assert authorize(platform, Subject("admin", workspace="fraud"), "delete", MODEL).refused

    def test_bindings_for_every_workspace_apply_everywhere(self, platform: Policy) -> None:
        for workspace in (None, "fraud", "pricing-us", "anything"):
            subject = Subject("dave", workspace=workspace)
            assert authorize(platform, subject, "approve:production", MODEL).granted

    def test_a_refusal_names_the_workspace_and_where_it_would_be_granted(
        self, platform: Policy
    ) -> None:
        decision = authorize(platform, Subject("alice", workspace="pricing-eu"), "edit", MODEL)
        assert decision.reason == (
            "alice (groups: fraud-team) has no binding granting 'edit' on model "
            "'fraud-detector' in workspace 'pricing-eu'; bindings[0] grants it only in "
            "workspaces fraud"
        )
        assert decision.hint is not None
        assert decision.hint == (
            "Ask for role validator or contributor on model 'fraud-detector' in workspace "
            "'pricing-eu'; roles granting it: validator, contributor, admin."
        )

    def test_a_grant_names_the_workspace(self, platform: Policy) -> None:
        decision = authorize(platform, Subject("alice", workspace="fraud"), "edit", MODEL)
        assert decision.rule == "bindings[0] (role contributor)"
        assert decision.reason == (
            "alice holds role contributor on model 'fraud-detector' in workspace 'fraud', "
            "which grants 'edit'"
        )

    def test_policies_without_workspaces_keep_their_messages(self, team: Policy) -> None:
        decision = authorize(team, Subject("alice", workspace="fraud"), "delete", MODEL)
        assert "workspace" not in decision.reason
        assert decision.hint is not None and "workspace" not in decision.hint


class TestEveryDecisionRespectsWorkspaces:
    def test_permissions_and_roles(self, platform: Policy) -> None:
        in_fraud = Subject("alice", workspace="fraud")
        assert [g.permission for g in roles_of(platform, in_fraud, MODEL)] == ["contributor"]
        assert roles_of(platform, Subject("alice"), MODEL) == []
        assert permissions_of(platform, Subject("alice", workspace="pricing-a"), MODEL) == []
        assert [g.permission for g in permissions_of(platform, in_fraud, MODEL)] == [
            "read",
            "register",
            "edit",
            "request",
            "transition:Staging",
        ]

    def test_may_approve(self) -> None:
        gate = SPLIT.gates["production"]
        assert may_approve(SPLIT, gate, "m", Subject("cy", workspace="team-b")).granted
        refused = may_approve(SPLIT, gate, "m", Subject("cy", workspace="team-a"))
        assert refused.refused
        assert refused.reason == (
            "cy (no groups) holds none of role approver on model m in workspace 'team-a'"
        )
        assert refused.hint == "Ask for role approver on model 'm' in workspace 'team-a'."

    def test_may_break_glass(self, platform: Policy) -> None:
        gate = platform.gates["production"]
        assert may_break_glass(platform, gate, MODEL, Subject("admin")).granted
        assert may_break_glass(platform, gate, MODEL, Subject("admin", workspace="fraud")).refused

    def test_count_approvals_counts_roles_held_in_the_models_workspace(self) -> None:
        gate = SPLIT.gates["production"]
        votes = [
            ApprovalFact(name, frozenset(), NOW - timedelta(hours=1))
            for name in ("amy", "ben", "cy")
        ]

        def count(workspace: str | None) -> GateReport:
            return count_approvals(
                SPLIT, gate, "m", votes, requester="zed", creator=None, now=NOW, workspace=workspace
            )

        in_a = count("team-a")
        assert in_a.approvers == ("amy", "ben") and in_a.satisfied
        assert in_a.discarded == (
            ("cy", "not an approver: holds none of role approver on model m in workspace 'team-a'"),
        )
        in_b = count("team-b")
        assert in_b.approvers == ("cy",) and not in_b.satisfied
        default = count(None)
        assert default.valid == 0

    def test_tag_writers(self) -> None:
        allowed = tag_write_decision(SPLIT, Subject("val", workspace="team-a"), "m", "validated")
        assert allowed is not None and allowed.granted
        refused = tag_write_decision(SPLIT, Subject("val", workspace="team-b"), "m", "validated")
        assert refused is not None and refused.refused
        assert "in workspace 'team-b'" in refused.reason

    @pytest.mark.parametrize(
        ("workspace", "globs"),
        [
            ("team-a", ("shared-*", "a-*")),
            ("team-b", ("shared-*",)),
            (None, ("shared-*",)),
            ("lab-1", None),
        ],
    )
    def test_model_globs_granting(self, workspace: str | None, globs: object) -> None:
        assert model_globs_granting(SPLIT, Subject("ann", workspace=workspace), "read") == globs

    def test_model_globs_granting_other_permissions(self, team: Policy) -> None:
        assert model_globs_granting(team, Subject("mallory"), "read") == ()
        assert model_globs_granting(team, Subject("alice"), "read") is None
        assert model_globs_granting(team, Subject("carol"), "delete") == ()
        assert model_globs_granting(team, Subject("carol"), "no-such-permission") == ()
