"""Trusted tag writers: a gate's ``checks.tags`` entry with ``set_by``.

strict.yaml's production gate wants ``validation_status: passed`` set by role validator
(user svc-validation, on fraud-* and churn-* models); its ``model_card`` tag has no
``set_by``. platform.yaml binds svc-validation as validator on every model.
"""

from __future__ import annotations

import pytest
import yaml

from mlflow_governance.policy import (
    Decision,
    Policy,
    Subject,
    load_policy_text,
    policy_to_dict,
    tag_move_decision,
    tag_write_decision,
)
from tests.policy._support import issues_of, lines

MODEL = "fraud-detector"

TWO_GATES = load_policy_text(
    """
version: 1
roles:
  validator: [read, edit]
  reviewer: [read, edit]
  both: [read, edit]
bindings:
  - {role: validator, principals: ["user:val"]}
  - {role: reviewer, principals: ["user:rev"]}
  - {role: validator, principals: ["user:duo"]}
  - {role: reviewer, principals: ["user:duo"]}
  - {role: both, principals: ["user:both"]}
gates:
  staging:
    targets: {stages: [Staging]}
    checks: {tags: {checked: {value: "yes", set_by: [validator, both]}}}
  production:
    targets: {stages: [Production]}
    models: ["fraud-*"]
    checks: {tags: {checked: {value: "yes", set_by: [reviewer, both]}}}
"""
)


class TestLoading:
    def test_the_long_form_keeps_the_value_and_names_the_writers(self, strict: Policy) -> None:
        checks = strict.gates["production"].checks
        assert dict(checks.tags) == {"validation_status": "passed", "model_card": "reviewed"}
        assert dict(checks.tag_set_by) == {"validation_status": ("validator",)}

    def test_a_mapping_without_set_by_is_the_plain_form(self) -> None:
        policy = load_policy_text(
            "version: 1\ngates: {g: {targets: {stages: [Staging]}, "
            "checks: {tags: {t: {value: ok}}}}}\n"
        )
        assert dict(policy.gates["g"].checks.tags) == {"t": "ok"}
        assert not policy.gates["g"].checks.tag_set_by

    def test_policy_to_dict_writes_the_long_form_only_where_needed(self, strict: Policy) -> None:
        tags = policy_to_dict(strict)["gates"]["production"]["checks"]["tags"]
        assert tags == {
            "validation_status": {"value": "passed", "set_by": ["validator"]},
            "model_card": "reviewed",
        }
        assert load_policy_text(yaml.safe_dump(policy_to_dict(strict))) == strict

    def test_every_mistake_in_a_long_form_is_pinned(self) -> None:
        issues = issues_of("bad_trusted_checks")
        assert lines(issues) == {
            "gates.production.checks.metrics.accuracy.condition": 8,
            "gates.production.checks.metrics.auc": 9,
            "gates.production.checks.metrics.auc.not_by_requester": 9,
            "gates.production.checks.metrics.f1.logged_before": 10,
            "gates.production.checks.tags.validation_status.set_by[0]": 12,
            "gates.production.checks.tags.model_card": 13,
            "gates.production.checks.tags.reviewed.set_by": 14,
            "gates.production.checks.tags.approved.value": 15,
            "gates.production.checks.tags.approved.set_by": 15,
        }
        by_field = {issue.field: issue for issue in issues}
        unknown = by_field["gates.production.checks.tags.validation_status.set_by[0]"]
        assert unknown.message == "unknown role 'validators'"
        assert unknown.valid == ("validator", "approver")
        assert by_field["gates.production.checks.tags.model_card"].message == (
            "missing required key 'value', e.g. value: passed"
        )
        assert by_field["gates.production.checks.tags.reviewed.set_by"].message.startswith(
            "an empty list would let nobody set the tag"
        )
        assert by_field["gates.production.checks.metrics.f1.logged_before"].valid == (
            "condition",
            "logged_before_request",
            "not_by_requester",
        )


class TestTagWriteDecision:
    def test_a_tag_no_gate_restricts_is_not_decided_here(self, strict: Policy) -> None:
        assert tag_write_decision(strict, Subject("alice"), MODEL, "model_card") is None
        assert tag_write_decision(strict, Subject("alice"), MODEL, "notes") is None

    def test_a_gate_restricts_only_the_models_it_covers(self, strict: Policy) -> None:
        # strict's production gate covers every model, so pricing is restricted too.
        assert tag_write_decision(strict, Subject("alice"), "pricing", "validation_status")
        assert tag_write_decision(TWO_GATES, Subject("val"), "churn", "checked") == Decision(
            True,
            "allow",
            "bindings[0] (role validator)",
            "val holds role validator on model 'churn', trusted by gate staging to set tag "
            "'checked'",
        )

    def test_the_trusted_role_may_write(self, strict: Policy) -> None:
        decision = tag_write_decision(strict, Subject("svc-validation"), MODEL, "validation_status")
        assert decision is not None and decision.granted
        assert decision.rule == "bindings[7] (role validator)"

    def test_anyone_else_is_refused_with_the_rule_and_the_way_out(self, strict: Policy) -> None:
        decision = tag_write_decision(strict, Subject("alice"), MODEL, "validation_status")
        assert decision == Decision(
            False,
            "deny",
            "gates.production.checks.tags.validation_status.set_by",
            "alice (groups: data-science) holds none of role validator on model "
            "'fraud-detector'; gate production accepts tag 'validation_status' only from them",
            "Ask for role validator on model 'fraud-detector', or let a holder of it write "
            "the tag.",
        )

    def test_the_trusted_role_must_cover_the_model(self, strict: Policy) -> None:
        # svc-validation is validator on fraud-* and churn-* only.
        decision = tag_write_decision(
            strict, Subject("svc-validation"), "pricing", "validation_status"
        )
        assert decision is not None and decision.refused
        assert "on model 'pricing'" in decision.reason

    def test_holding_edit_or_even_everything_is_not_enough(self, strict: Policy) -> None:
        decision = tag_write_decision(strict, Subject("admin"), MODEL, "validation_status")
        assert decision is not None and decision.refused

    def test_every_restricting_gate_must_trust_the_writer(self) -> None:
        # fraud-* models sit behind both gates; other models behind staging only.
        val = tag_write_decision(TWO_GATES, Subject("val"), MODEL, "checked")
        assert val is not None and val.refused
        assert val.rule == "gates.production.checks.tags.checked.set_by"
        rev = tag_write_decision(TWO_GATES, Subject("rev"), MODEL, "checked")
        assert rev is not None and rev.rule == "gates.staging.checks.tags.checked.set_by"
        duo = tag_write_decision(TWO_GATES, Subject("duo"), MODEL, "checked")
        assert duo is not None and duo.granted
        assert duo.rule == "bindings[2] (role validator), bindings[3] (role reviewer)"
        assert duo.reason == (
            "duo holds role validator, reviewer on model 'fraud-detector', trusted by gate "
            "staging, production to set tag 'checked'"
        )
        both = tag_write_decision(TWO_GATES, Subject("both"), MODEL, "checked")
        assert both is not None and both.granted and both.rule == "bindings[4] (role both)"

    @pytest.mark.parametrize(
        "key",
        ["VALIDATION_STATUS", "Validation_Status", "validation_status ", "validátion_status"],
    )
    def test_keys_a_database_collation_would_confuse_are_restricted_too(
        self, strict: Policy, key: str
    ) -> None:
        decision = tag_write_decision(strict, Subject("alice"), MODEL, key)
        assert decision is not None and decision.refused
        assert "(the same tag as 'validation_status' to the database)" in decision.reason

    def test_audit_only_records_would_deny(self) -> None:
        policy = load_policy_text(
            "version: 1\nmode: audit-only\nroles: {v: [edit]}\n"
            "gates: {g: {targets: {stages: [Staging]}, "
            "checks: {tags: {t: {value: ok, set_by: [v]}}}}}\n"
        )
        decision = tag_write_decision(policy, Subject("alice"), MODEL, "t")
        assert decision is not None
        assert (decision.allowed, decision.effect, decision.rule) == (
            True,
            "would-deny",
            "mode audit-only",
        )
        assert (
            decision.hint
            == "Ask for role v on model 'fraud-detector', or let a holder of it write the tag."
        )


class TestTagMoveDecision:
    """A rename carries version tags to a name other gates may cover."""

    def test_a_tag_moving_into_a_gate_must_be_vouched_for(self) -> None:
        # Only staging restricts `checked` on "sandbox"; production also does on fraud-*.
        refused = tag_move_decision(TWO_GATES, Subject("val"), "sandbox", MODEL, "checked")
        assert refused is not None and refused.refused
        assert refused.rule == "gates.production.checks.tags.checked.set_by"
        both = tag_move_decision(TWO_GATES, Subject("both"), "sandbox", MODEL, "checked")
        assert both is not None and both.granted

    def test_a_tag_the_same_gates_restricted_before_moves_freely(self) -> None:
        assert tag_move_decision(TWO_GATES, Subject("x"), "fraud-a", "fraud-b", "checked") is None
        assert tag_move_decision(TWO_GATES, Subject("x"), MODEL, "sandbox", "checked") is None
        assert tag_move_decision(TWO_GATES, Subject("x"), "a", "b", "unrestricted") is None

    def test_a_tag_from_an_ungated_model_is_checked(self) -> None:
        policy = load_policy_text(
            "version: 1\nroles: {v: [edit]}\n"
            "gates: {g: {targets: {stages: [Staging]}, models: ['fraud-*'], "
            "checks: {tags: {t: {value: ok, set_by: [v]}}}}}\n"
        )
        decision = tag_move_decision(policy, Subject("alice"), "sandbox", "fraud-x", "T")
        assert decision is not None and decision.refused
