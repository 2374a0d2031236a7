"""Which gates stand in front of a move, and what the version itself must show."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from mlflow_governance.policy import (
    CheckResult,
    Policy,
    Subject,
    VersionFacts,
    evaluate_checks,
    gates_for,
    load_policy_text,
    may_break_glass,
    protected_by,
)
from mlflow_governance.policy.permissions import GlobSet

MODEL = "fraud-detector"

SCOPED = load_policy_text(
    """
version: 1
gates:
  fraud-prod:
    targets: {stages: [Production]}
    models: ["fraud-*"]
  everything-prod:
    targets: {stages: [production], aliases: ["prod-*", champion]}
"""
)


def names(gates: tuple[object, ...]) -> list[str]:
    return [gate.name for gate in gates]  # type: ignore[attr-defined]


class TestGatesFor:
    def test_a_stage_target_matches_case_insensitively(self, team: Policy) -> None:
        assert names(gates_for(team, MODEL, stage="Production")) == ["production"]
        assert names(gates_for(team, MODEL, stage="production")) == ["production"]
        assert gates_for(team, MODEL, stage="Staging") == ()

    def test_an_alias_target_matches_by_name(self, team: Policy) -> None:
        assert names(gates_for(team, MODEL, alias="champion")) == ["production"]
        assert names(gates_for(team, MODEL, alias="prod")) == ["production"]
        assert gates_for(team, MODEL, alias="challenger") == ()

    def test_alias_targets_may_be_globs(self, strict: Policy) -> None:
        assert names(gates_for(strict, MODEL, alias="prod-eu")) == ["production"]
        assert gates_for(strict, MODEL, alias="production") == ()
        assert names(gates_for(strict, MODEL, alias="challenger")) == ["staging"]

    def test_no_target_means_no_gate(self, team: Policy) -> None:
        assert gates_for(team, MODEL) == ()

    def test_gates_may_be_limited_to_some_models(self) -> None:
        assert names(gates_for(SCOPED, "fraud-x", stage="Production")) == [
            "fraud-prod",
            "everything-prod",
        ]
        assert names(gates_for(SCOPED, "churn", stage="Production")) == ["everything-prod"]
        assert names(gates_for(SCOPED, "churn", alias="prod-us")) == ["everything-prod"]

    def test_gate_fields_are_loaded(self, team: Policy) -> None:
        gate = team.gates["production"]
        assert gate.targets.stages == ("Production",)
        assert gate.targets.aliases == ("champion", "prod")
        assert gate.from_stages == ("Staging",)
        assert gate.approvals.required == 2
        assert gate.approvals.approver_roles == ("approver",)
        assert gate.approvals.distinct_from == ("requester", "version_creator")
        assert gate.approvals.expire_after == timedelta(hours=72)
        assert dict(gate.checks.tags) == {"validation_status": "passed"}
        assert gate.apply == "automatic"
        assert gate.rollback_approvals == 1
        assert gate.required_approvals(rollback=True) == 1
        assert gate.break_glass_roles == ("admin",)
        assert gate.archive_existing is True
        assert gate.models == ("*",)

    def test_gate_defaults(self) -> None:
        gate = SCOPED.gates["everything-prod"]
        assert gate.targets.stages == ("Production",)
        assert gate.approvals.required == 0
        assert gate.apply == "automatic"
        assert gate.rollback_approvals is None
        assert gate.required_approvals(rollback=True) == 0
        assert gate.archive_existing is False


GOOD = VersionFacts(
    metrics={"accuracy": 0.97, "auc": 0.95, "latency_ms": 120.0},
    tags={"validation_status": "passed", "model_card": "reviewed"},
    has_signature=True,
    current_stage="Staging",
)


class TestEvaluateChecks:
    def test_a_version_meeting_every_requirement_passes(self, strict: Policy) -> None:
        results = evaluate_checks(strict.gates["production"], GOOD)
        assert [r.name for r in results] == [
            "from_stages",
            "metric accuracy",
            "metric auc",
            "metric latency_ms",
            "tag validation_status",
            "tag model_card",
            "signature",
        ]
        assert all(r.passed for r in results)

    def test_each_failure_says_expected_and_actual(self, strict: Policy) -> None:
        facts = VersionFacts(
            metrics={"accuracy": 0.93, "latency_ms": 250.0},
            tags={"validation_status": "failed"},
            has_signature=False,
            current_stage="None",
        )
        assert evaluate_checks(strict.gates["production"], facts) == (
            CheckResult("from_stages", False, "stage Staging", "None"),
            CheckResult("metric accuracy", False, ">= 0.95", "0.93"),
            CheckResult("metric auc", False, "> 0.9", "missing"),
            CheckResult("metric latency_ms", False, "< 200", "250"),
            CheckResult("tag validation_status", False, "passed", "failed"),
            CheckResult("tag model_card", False, "reviewed", "missing"),
            CheckResult("signature", False, "present", "missing"),
        )

    @pytest.mark.parametrize(
        ("expression", "value", "passed"),
        [
            (">= 0.9", 0.9, True),
            (">= 0.9", 0.89, False),
            ("> 0.9", 0.9, False),
            ("<= 200", 200.0, True),
            ("< 200", 200.0, False),
            ("== 1", 1.0, True),
            ("== 1", 1.5, False),
            ("!= 0", 0.0, False),
            ("!= 0", 2.0, True),
            (">=1e-3", 0.002, True),
            (">= -5", math.nan, False),
        ],
    )
    def test_every_metric_operator(self, expression: str, value: float, passed: bool) -> None:
        policy = load_policy_text(
            "version: 1\ngates:\n  g:\n    targets: {stages: [Staging]}\n"
            f"    checks: {{metrics: {{m: '{expression}'}}}}\n"
        )
        (result,) = evaluate_checks(policy.gates["g"], VersionFacts(metrics={"m": value}))
        assert result.passed is passed

    def test_from_stages_compares_case_insensitively(self, team: Policy) -> None:
        (stage, _tag) = evaluate_checks(
            team.gates["production"], VersionFacts(current_stage="staging")
        )
        assert stage == CheckResult("from_stages", True, "stage Staging", "Staging")

    def test_a_gate_without_requirements_has_no_checks(self) -> None:
        assert evaluate_checks(SCOPED.gates["fraud-prod"], VersionFacts()) == ()

    def test_a_non_numeric_metric_fails_rather_than_raising(self, strict: Policy) -> None:
        facts = VersionFacts(metrics={"accuracy": "high"})  # type: ignore[dict-item]
        results = evaluate_checks(strict.gates["staging"], facts)
        assert results[0] == CheckResult("metric accuracy", False, ">= 0.9", "'high'")


class TestProtectDelete:
    def test_protected_stages_and_aliases(self, team: Policy) -> None:
        assert protected_by(team, stage="Production") == "Production"
        assert protected_by(team, stage="production") == "Production"
        assert protected_by(team, stage="Staging", aliases=["champion"]) == "champion"
        assert protected_by(team, stage="Staging", aliases=["challenger"]) is None
        assert protected_by(team) is None

    def test_stage_names_in_the_list_are_canonicalised(self) -> None:
        policy = load_policy_text("version: 1\nprotect_delete: [production, Champion]\n")
        assert policy.protect_delete == ("Production", "Champion")
        assert protected_by(policy, aliases=["champion"]) is None


class TestBreakGlass:
    def test_only_break_glass_roles_may_break_glass(self, team: Policy) -> None:
        gate = team.gates["production"]
        assert may_break_glass(team, gate, MODEL, Subject("admin")).allowed
        refused = may_break_glass(team, gate, MODEL, Subject("dave"))
        assert refused.refused
        assert refused.reason == (
            "dave (groups: release-managers) holds none of role admin on model fraud-detector"
        )
        assert refused.hint == "Ask for role admin on model 'fraud-detector'."

    def test_a_gate_without_break_glass_roles_refuses_everyone(self, strict: Policy) -> None:
        refused = may_break_glass(strict, strict.gates["staging"], MODEL, Subject("admin"))
        assert refused.refused
        assert refused.reason == "no role may break glass on gate staging"


class TestGlobs:
    @pytest.mark.parametrize(
        ("patterns", "name", "matches"),
        [
            (("*",), "anything", True),
            (("fraud-detector",), "fraud-detector", True),
            (("fraud-detector",), "fraud-detector-2", False),
            (("fraud-*",), "fraud-", True),
            (("fraud-*",), "Fraud-x", False),
            (("m?",), "m1", True),
            (("m?",), "m12", False),
            (("eu-[ab]*",), "eu-a1", True),
            (("eu-[!ab]*",), "eu-a1", False),
            (("*-prod",), "fraud-prod", True),
            (("a*", "b?", "c"), "b1", True),
            ((), "x", False),
        ],
    )
    def test_glob_sets(self, patterns: tuple[str, ...], name: str, matches: bool) -> None:
        assert GlobSet.of(patterns).match(name) is matches
