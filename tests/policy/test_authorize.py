"""Who may do what: ``authorize`` read against the example policies.

team.yaml: data-science (alice, bob) and svc-ci are contributors on every model;
ml-engineers (carol, frank) are promoters; release-managers (dave, erin) approve
production; ops (oscar) read; admin holds ``*``.
"""

from __future__ import annotations

import pytest

from mlflow_governance.policy import (
    Policy,
    Subject,
    authorize,
    default_policy,
    load_policy_text,
    permissions_of,
    roles_of,
)

MODEL = "fraud-detector"

TRANSITION_STAR = load_policy_text(
    """
version: 1
roles:
  mover: ["transition:*"]
  champions: ["alias:champion-*", "alias:prod"]
bindings:
  - {role: mover, principals: ["user:mo"]}
  - {role: champions, principals: ["user:cham"], models: ["fraud-*"]}
  - {role: mover, principals: ["user:cham"], models: ["churn-*"]}
"""
)


class TestTeamStory:
    @pytest.mark.parametrize("permission", ["read", "register", "edit", "request"])
    def test_data_scientists_build_any_model(self, team: Policy, permission: str) -> None:
        assert authorize(team, Subject("alice"), permission, MODEL).allowed
        assert authorize(team, Subject("bob"), permission, "anything-else").allowed

    @pytest.mark.parametrize("permission", ["delete", "transition:Staging", "alias:champion"])
    def test_data_scientists_cannot_delete_or_promote(self, team: Policy, permission: str) -> None:
        assert authorize(team, Subject("alice"), permission, MODEL).refused

    def test_the_ci_service_account_is_a_contributor(self, team: Policy) -> None:
        assert authorize(team, Subject("svc-ci"), "register", MODEL).allowed
        assert authorize(team, Subject("svc-ci"), "request", MODEL).allowed
        assert authorize(team, Subject("svc-ci"), "transition:Staging", MODEL).refused

    @pytest.mark.parametrize(
        "permission", ["read", "request", "transition:Staging", "alias:challenger"]
    )
    def test_ml_engineers_stage_and_challenge(self, team: Policy, permission: str) -> None:
        assert authorize(team, Subject("carol"), permission, MODEL).allowed
        assert authorize(team, Subject("frank"), permission, MODEL).allowed

    @pytest.mark.parametrize(
        "permission",
        ["register", "edit", "transition:Production", "alias:champion", "approve:production"],
    )
    def test_ml_engineers_cannot_register_or_reach_production(
        self, team: Policy, permission: str
    ) -> None:
        assert authorize(team, Subject("carol"), permission, MODEL).refused

    def test_release_managers_approve_production(self, team: Policy) -> None:
        assert authorize(team, Subject("dave"), "approve:production", MODEL).allowed
        assert authorize(team, Subject("erin"), "approve:production", MODEL).allowed
        assert authorize(team, Subject("dave"), "transition:Production", MODEL).refused

    @pytest.mark.parametrize("permission", ["register", "edit", "delete", "request"])
    def test_ops_only_read(self, team: Policy, permission: str) -> None:
        assert authorize(team, Subject("oscar"), "read", MODEL).allowed
        assert authorize(team, Subject("oscar"), permission, MODEL).refused

    @pytest.mark.parametrize(
        "permission",
        [
            "read",
            "register",
            "edit",
            "delete",
            "request",
            "transition:None",
            "transition:Staging",
            "transition:Production",
            "transition:Archived",
            "transition:*",
            "alias:anything",
            "approve:production",
            "audit:read",
            "policy:admin",
            "*",
        ],
    )
    def test_admin_holds_everything(self, team: Policy, permission: str) -> None:
        assert authorize(team, Subject("admin"), permission, MODEL).allowed
        assert authorize(team, Subject("admin"), permission, None).allowed

    def test_strangers_get_nothing(self, team: Policy) -> None:
        assert authorize(team, Subject("mallory"), "read", MODEL).refused


class TestPermissionVocabulary:
    def test_stage_names_are_matched_case_insensitively(self, team: Policy) -> None:
        decision = authorize(team, Subject("carol"), "transition:staging", MODEL)
        assert decision.allowed
        assert "'transition:Staging'" in decision.reason

    def test_transition_star_grants_every_stage(self) -> None:
        for stage in ("None", "Staging", "production", "ARCHIVED"):
            assert authorize(TRANSITION_STAR, Subject("mo"), f"transition:{stage}", MODEL).allowed
        assert authorize(TRANSITION_STAR, Subject("mo"), "alias:prod", MODEL).refused

    def test_alias_permissions_are_globs_matched_against_the_concrete_alias(self) -> None:
        cham = Subject("cham")
        assert authorize(TRANSITION_STAR, cham, "alias:champion-eu", MODEL).allowed
        assert authorize(TRANSITION_STAR, cham, "alias:prod", MODEL).allowed
        assert authorize(TRANSITION_STAR, cham, "alias:champion", MODEL).refused
        assert authorize(TRANSITION_STAR, cham, "alias:production", MODEL).refused

    def test_audit_read_and_policy_admin(self, strict: Policy) -> None:
        assert authorize(strict, Subject("rita"), "audit:read", None).allowed
        assert authorize(strict, Subject("rita"), "policy:admin", None).refused
        assert authorize(strict, Subject("platform-lead"), "policy:admin", None).allowed
        assert authorize(strict, Subject("alice"), "audit:read", None).refused

    def test_approve_names_one_gate(self, strict: Policy) -> None:
        assert authorize(strict, Subject("carol"), "approve:staging", MODEL).allowed
        assert authorize(strict, Subject("carol"), "approve:production", MODEL).refused
        assert authorize(strict, Subject("rita"), "approve:production", MODEL).allowed

    def test_star_as_a_permission_needs_a_star_role(self, team: Policy) -> None:
        assert authorize(team, Subject("admin"), "*", MODEL).allowed
        assert authorize(team, Subject("alice"), "*", MODEL).refused

    @pytest.mark.parametrize(
        "permission", ["deploy", "READ", "transition:Prod", "transition:", "approve:", ""]
    )
    def test_unknown_permissions_are_refused_not_raised(
        self, team: Policy, permission: str
    ) -> None:
        decision = authorize(team, Subject("admin"), permission, MODEL)
        assert decision.refused
        assert decision.rule == "unknown-permission"
        assert decision.hint is not None and "transition:Production" in decision.hint


class TestPrincipalsAndModels:
    def test_bindings_apply_only_to_matching_models(self, strict: Policy) -> None:
        assert authorize(strict, Subject("alice"), "register", "fraud-detector").allowed
        assert authorize(strict, Subject("alice"), "register", "churn-model").allowed
        refused = authorize(strict, Subject("alice"), "register", "pricing")
        assert refused.refused
        assert "bindings[0] grants it only on models fraud-*, churn-*" in refused.reason

    def test_user_star_binds_everyone(self, strict: Policy) -> None:
        assert authorize(strict, Subject("someone-new"), "read", "pricing").allowed

    def test_groups_from_a_trusted_header_count(self, team: Policy) -> None:
        header = Subject("zoe", frozenset({"ml-engineers"}))
        assert authorize(team, header, "transition:Staging", MODEL).allowed
        assert authorize(team, Subject("zoe"), "transition:Staging", MODEL).refused

    def test_header_groups_add_to_the_policy_groups(self, team: Policy) -> None:
        both = Subject("alice", frozenset({"ops", "ml-engineers"}))
        assert authorize(team, both, "register", MODEL).allowed
        assert authorize(team, both, "transition:Staging", MODEL).allowed

    def test_subject_groups_may_be_any_iterable(self, team: Policy) -> None:
        assert Subject("zoe", {"ops"}).groups == frozenset({"ops"})  # type: ignore[arg-type]

    def test_no_model_means_every_model(self, strict: Policy, team: Policy) -> None:
        assert authorize(team, Subject("alice"), "register", None).allowed
        # alice is a contributor on fraud-* and churn-* only, not on "every model".
        refused = authorize(strict, Subject("alice"), "register", None)
        assert refused.refused
        assert "on every model" in refused.reason

    def test_the_first_matching_binding_in_file_order_decides(self) -> None:
        policy = load_policy_text(
            """
version: 1
roles: {a: [read], b: [read, edit]}
bindings:
  - {role: b, principals: ["group:g"]}
  - {role: a, principals: ["user:u"]}
groups: {g: [u]}
"""
        )
        assert authorize(policy, Subject("u"), "read", MODEL).rule == "bindings[0] (role b)"


class TestDecisions:
    def test_an_allow_names_the_binding_and_role(self, team: Policy) -> None:
        decision = authorize(team, Subject("carol"), "transition:Staging", MODEL)
        assert decision.effect == "allow"
        assert decision.granted and not decision.refused
        assert decision.rule == "bindings[1] (role promoter)"
        assert decision.hint is None

    def test_a_refusal_says_who_what_which_rule_and_the_way_out(self, team: Policy) -> None:
        decision = authorize(team, Subject("alice"), "transition:Staging", MODEL)
        assert (decision.allowed, decision.effect, decision.rule) == (False, "deny", "default-deny")
        assert decision.reason == (
            "alice (groups: data-science) has no binding granting 'transition:Staging' "
            "on model 'fraud-detector'"
        )
        assert decision.hint == (
            "Ask for role promoter on model 'fraud-detector'; roles granting it: promoter, admin."
        )

    def test_the_hint_suggests_the_narrowest_roles_first(self, team: Policy) -> None:
        hint = authorize(team, Subject("mallory"), "read", MODEL).hint
        assert hint is not None
        assert hint.startswith("Ask for role viewer or approver on model")
        assert hint.endswith("roles granting it: viewer, approver, contributor, promoter, admin.")

    def test_a_permission_no_role_grants_says_so(self, strict: Policy) -> None:
        hint = authorize(strict, Subject("alice"), "alias:nobody-has-this", MODEL).hint
        assert hint == ("Ask for role admin on model 'fraud-detector'; roles granting it: admin.")
        assert authorize(load_policy_text("version: 1"), Subject("a"), "read", "m").hint == (
            "No role in the policy grants 'read'; a policy admin must add it to a role "
            "and bind that role."
        )

    def test_a_user_without_groups_is_described_so(self, team: Policy) -> None:
        assert authorize(team, Subject("mallory"), "read", MODEL).reason.startswith(
            "mallory (no groups) has no binding"
        )


class TestAuditOnly:
    def test_nothing_is_refused_but_everything_ungranted_is_flagged(
        self, open_policy: Policy
    ) -> None:
        decision = authorize(open_policy, Subject("alice"), "delete", MODEL)
        assert decision.allowed
        assert not decision.refused
        assert not decision.granted
        assert decision.effect == "would-deny"
        assert decision.rule == "mode audit-only"
        assert "has no binding granting 'delete'" in decision.reason

    def test_granted_actions_are_plain_allows(self) -> None:
        policy = load_policy_text(
            "version: 1\nmode: audit-only\nroles: {r: [read]}\n"
            "bindings: [{role: r, principals: ['user:*']}]\n"
        )
        assert authorize(policy, Subject("x"), "read", MODEL).effect == "allow"
        assert authorize(policy, Subject("x"), "edit", MODEL).effect == "would-deny"

    def test_the_default_policy_is_audit_only_and_empty(self) -> None:
        policy = default_policy()
        assert (policy.version, policy.mode) == (1, "audit-only")
        assert not (policy.groups or policy.roles or policy.bindings or policy.gates)
        assert authorize(policy, Subject("anyone"), "delete", MODEL).effect == "would-deny"


class TestExplain:
    def test_permissions_of_lists_each_permission_with_its_rule(self, team: Policy) -> None:
        assert permissions_of(team, Subject("carol"), MODEL) == [
            ("read", "bindings[1] (role promoter)"),
            ("request", "bindings[1] (role promoter)"),
            ("transition:Staging", "bindings[1] (role promoter)"),
            ("alias:challenger", "bindings[1] (role promoter)"),
        ]

    def test_permissions_of_merges_bindings_keeping_the_first_rule(self, team: Policy) -> None:
        grants = permissions_of(team, Subject("alice", frozenset({"ops"})), MODEL)
        assert grants[0] == ("read", "bindings[0] (role contributor)")
        assert [g.permission for g in grants] == ["read", "register", "edit", "request"]

    def test_permissions_of_respects_model_globs(self, strict: Policy) -> None:
        assert [g.permission for g in permissions_of(strict, Subject("alice"), "pricing")] == [
            "read"
        ]
        assert permissions_of(strict, Subject("alice"), None) == [
            ("read", "bindings[4] (role viewer)")
        ]

    def test_roles_of(self, team: Policy) -> None:
        assert roles_of(team, Subject("dave"), MODEL) == [
            ("approver", "bindings[2] (role approver)")
        ]
        assert roles_of(team, Subject("mallory"), MODEL) == []
