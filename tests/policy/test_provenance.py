"""Metric provenance: a metric logged before the request, by someone other than the requester.

platform.yaml's production gate wants ``accuracy >= 0.9`` logged before the request and
not by the requester, and ``latency_ms < 200`` with no provenance requirement.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from mlflow_governance.policy import (
    CheckResult,
    MetricOrigin,
    MetricProvenance,
    Policy,
    VersionFacts,
    evaluate_checks,
    load_policy_text,
    policy_to_dict,
)

REQUESTED = datetime(2026, 11, 27, 9, 0, 0)  # naive: UTC, as databases hand it back
BEFORE = datetime(2026, 11, 27, 8, 30, 0)
AFTER = datetime(2026, 11, 27, 10, 0, 0)


def facts(logged_at: datetime | None = BEFORE, logged_by: str | None = "val") -> VersionFacts:
    return VersionFacts(
        metrics={"accuracy": 0.95, "latency_ms": 120.0},
        tags={"validation_status": "passed"},
        has_signature=True,
        current_stage="Staging",
        metric_origins={"accuracy": MetricOrigin(logged_at, logged_by)},
    )


def accuracy_checks(
    policy: Policy,
    version: VersionFacts,
    *,
    request_time: datetime | None = None,
    requester: str | None,
) -> dict[str, tuple[bool, str, str]]:
    results = evaluate_checks(
        policy.gates["production"], version, request_time=request_time, requester=requester
    )
    return {r.name: (r.passed, r.expected, r.actual) for r in results if "accuracy" in r.name}


class TestLoading:
    def test_the_long_form_keeps_the_condition_and_the_requirements(self, platform: Policy) -> None:
        checks = platform.gates["production"].checks
        assert [str(c) for c in checks.metrics.values()] == [">= 0.9", "< 200"]
        assert dict(checks.metric_provenance) == {
            "accuracy": MetricProvenance(logged_before_request=True, not_by_requester=True)
        }

    def test_a_long_form_without_requirements_is_the_plain_form(self) -> None:
        policy = load_policy_text(
            "version: 1\ngates: {g: {targets: {stages: [Staging]}, checks: {metrics: "
            "{m: {condition: '> 1', logged_before_request: false}}}}}\n"
        )
        assert not policy.gates["g"].checks.metric_provenance
        assert policy_to_dict(policy)["gates"]["g"]["checks"]["metrics"] == {"m": "> 1"}

    def test_policy_to_dict_writes_the_long_form_where_needed(self, platform: Policy) -> None:
        metrics = policy_to_dict(platform)["gates"]["production"]["checks"]["metrics"]
        assert metrics == {
            "accuracy": {
                "condition": ">= 0.9",
                "logged_before_request": True,
                "not_by_requester": True,
            },
            "latency_ms": "< 200",
        }
        assert load_policy_text(yaml.safe_dump(policy_to_dict(platform))) == platform


class TestEvaluation:
    def test_results_follow_each_metric_in_order(self, platform: Policy) -> None:
        results = evaluate_checks(
            platform.gates["production"], facts(), request_time=REQUESTED, requester="alice"
        )
        assert [r.name for r in results] == [
            "from_stages",
            "metric accuracy",
            "metric accuracy logged_before_request",
            "metric accuracy not_by_requester",
            "metric latency_ms",
            "tag validation_status",
            "signature",
        ]
        assert all(r.passed for r in results)
        assert results[2] == CheckResult(
            "metric accuracy logged_before_request",
            True,
            "logged before the request (2026-11-27T09:00:00Z)",
            "logged 2026-11-27T08:30:00Z",
        )
        assert results[3] == CheckResult(
            "metric accuracy not_by_requester",
            True,
            "logged by someone other than the requester (alice)",
            "logged by val",
        )

    def test_a_metric_logged_after_the_request_fails(self, platform: Policy) -> None:
        checks = accuracy_checks(
            platform, facts(logged_at=AFTER), request_time=REQUESTED, requester="alice"
        )
        assert checks["metric accuracy"][0] is True
        assert checks["metric accuracy logged_before_request"] == (
            False,
            "logged before the request (2026-11-27T09:00:00Z)",
            "logged 2026-11-27T10:00:00Z, after the request (2026-11-27T09:00:00Z)",
        )

    def test_logged_at_the_very_moment_of_the_request_is_not_before_it(
        self, platform: Policy
    ) -> None:
        moment = datetime(2026, 11, 27, 9, 0, 0, 250_000, tzinfo=timezone.utc)
        checks = accuracy_checks(
            platform, facts(logged_at=moment), request_time=moment, requester="alice"
        )
        assert checks["metric accuracy logged_before_request"] == (
            False,
            "logged before the request (2026-11-27T09:00:00.250Z)",
            "logged 2026-11-27T09:00:00.250Z, the moment of the request (2026-11-27T09:00:00.250Z)",
        )

    def test_aware_and_naive_times_compare(self, platform: Policy) -> None:
        aware_request = datetime(2026, 11, 27, 10, 0, tzinfo=timezone(timedelta(hours=1)))
        checks = accuracy_checks(
            platform, facts(logged_at=BEFORE), request_time=aware_request, requester="alice"
        )
        assert checks["metric accuracy logged_before_request"][0] is True
        assert checks["metric accuracy logged_before_request"][1] == (
            "logged before the request (2026-11-27T09:00:00Z)"
        )

    def test_without_a_request_now_is_the_request_time(self, platform: Policy) -> None:
        past = accuracy_checks(platform, facts(logged_at=BEFORE), requester="alice")
        assert past["metric accuracy logged_before_request"] == (
            True,
            "logged before now",
            "logged 2026-11-27T08:30:00Z",
        )
        future = datetime.now(timezone.utc) + timedelta(days=1)
        ahead = accuracy_checks(platform, facts(logged_at=future), requester="alice")
        passed, _, actual = ahead["metric accuracy logged_before_request"]
        assert passed is False and actual.endswith(", after now")

    def test_an_unknown_logging_time_fails(self, platform: Policy) -> None:
        checks = accuracy_checks(
            platform, facts(logged_at=None), request_time=REQUESTED, requester="alice"
        )
        assert checks["metric accuracy logged_before_request"][0::2] == (
            False,
            "logging time unknown",
        )

    def test_a_metric_logged_by_the_requester_fails(self, platform: Policy) -> None:
        checks = accuracy_checks(
            platform, facts(logged_by="alice"), request_time=REQUESTED, requester="alice"
        )
        assert checks["metric accuracy not_by_requester"] == (
            False,
            "logged by someone other than the requester (alice)",
            "logged by alice, the requester",
        )

    @pytest.mark.parametrize(
        ("logged_by", "requester", "actual"),
        [
            (None, "alice", "logged by an unknown user"),
            ("val", None, "logged by val; no requester to compare with"),
        ],
    )
    def test_an_unknown_logger_or_requester_fails(
        self, platform: Policy, logged_by: str | None, requester: str | None, actual: str
    ) -> None:
        checks = accuracy_checks(
            platform, facts(logged_by=logged_by), request_time=REQUESTED, requester=requester
        )
        assert checks["metric accuracy not_by_requester"][0::2] == (False, actual)

    def test_a_metric_without_an_origin_fails_both(self, platform: Policy) -> None:
        version = VersionFacts(metrics={"accuracy": 0.95})
        checks = accuracy_checks(platform, version, request_time=REQUESTED, requester="alice")
        assert checks["metric accuracy logged_before_request"][0::2] == (
            False,
            "logging time unknown",
        )
        assert checks["metric accuracy not_by_requester"][0::2] == (
            False,
            "logged by an unknown user",
        )

    def test_a_missing_metric_fails_every_line(self, platform: Policy) -> None:
        checks = accuracy_checks(
            platform, VersionFacts(), request_time=REQUESTED, requester="alice"
        )
        assert {name: result[0::2] for name, result in checks.items()} == {
            "metric accuracy": (False, "missing"),
            "metric accuracy logged_before_request": (False, "missing"),
            "metric accuracy not_by_requester": (False, "missing"),
        }

    def test_a_good_value_does_not_hide_bad_provenance(self, platform: Policy) -> None:
        results = evaluate_checks(
            platform.gates["production"],
            facts(logged_at=AFTER, logged_by="alice"),
            request_time=REQUESTED,
            requester="alice",
        )
        failed = [r.name for r in results if not r.passed]
        assert failed == [
            "metric accuracy logged_before_request",
            "metric accuracy not_by_requester",
        ]
