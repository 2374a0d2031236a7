"""``check NAME VERSION --gate G``: exit 0 pass, 1 fail, 2 error, against real MLflow data.

strict.yaml's staging gate wants ``accuracy >= 0.9`` and a signature. The versions are
registered (with their run ids) from runs logged in a SQLite tracking store and from
real logged scikit-learn models, one with a signature and one without.

The facts behind metric provenance (when and by whom a checked value was logged) are
read from runs and a logged model written to a copy of that tracking store.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from mlflow_governance.policy import MetricOrigin, evaluate_checks, load_policy_text
from mlflow_governance.workflow.facts import version_facts
from tests.workflow import Tracking
from tests.workflow.conftest import Registry

MODEL = "fraud-scorer"


@pytest.fixture
def scored(reg: Registry, tracking: Tracking, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.uri)
    plan = [
        (tracking.signed_model, tracking.good_run),  # 1: passes
        (tracking.signed_model, tracking.bad_run),  # 2: accuracy 0.8
        (tracking.unsigned_model, tracking.good_run),  # 3: no signature
        ("file:///nowhere/model", None),  # 4: no run, no model files
    ]
    for source, run_id in plan:
        reg.seed(MODEL, source=source, run_id=run_id)
    reg.use_policy("strict")
    return reg


def _checks(reg: Registry, version: int, gate: str, exit_code: int) -> dict[str, tuple]:
    data = reg.cli.json("alice", "check", MODEL, str(version), "--gate", gate, exit_code=exit_code)
    assert data["passed"] is (exit_code == 0)
    return {c["name"]: (c["passed"], c["expected"], c["actual"]) for c in data["checks"]}


def test_a_version_that_passes_exits_0(scored: Registry) -> None:
    assert _checks(scored, 1, "staging", 0) == {
        "metric accuracy": (True, ">= 0.9", "0.97"),
        "signature": (True, "present", "present"),
    }
    text = scored.cli("alice", "check", MODEL, "1", "--gate", "staging")
    assert text.exit_code == 0
    assert text.stdout.startswith(f"PASS: {MODEL} version 1 against gate staging")


def test_failing_checks_exit_1(scored: Registry) -> None:
    assert _checks(scored, 2, "staging", 1)["metric accuracy"] == (False, ">= 0.9", "0.8")
    assert _checks(scored, 2, "staging", 1)["signature"][0] is True
    assert _checks(scored, 3, "staging", 1) == {
        "metric accuracy": (True, ">= 0.9", "0.97"),
        "signature": (False, "present", "missing"),
    }
    assert _checks(scored, 4, "staging", 1) == {
        "metric accuracy": (False, ">= 0.9", "missing"),
        "signature": (False, "present", "missing"),
    }
    production = _checks(scored, 1, "production", 1)
    assert production["from_stages"] == (False, "stage Staging", "None")
    assert production["metric latency_ms"] == (True, "< 200", "120")
    assert production["metric auc"] == (False, "> 0.9", "missing")
    assert production["tag validation_status"] == (False, "passed", "missing")
    text = scored.cli("alice", "check", MODEL, "2", "--gate", "staging")
    assert text.exit_code == 1 and text.stdout.startswith("FAIL: ")
    lines = text.stdout.splitlines()
    assert lines[1].split() == ["NAME", "EXPECTED", "ACTUAL", "RESULT"]
    assert lines[2].split() == ["metric", "accuracy", ">=", "0.9", "0.8", "FAIL"]
    assert lines[3].split() == ["signature", "present", "present", "pass"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (MODEL, "1", "--gate", "nope"),
            "The policy has no gate 'nope' (gates: staging, production)",
        ),
        ((MODEL, "99", "--gate", "staging"), "not found"),
        (("no-such-model", "1", "--gate", "staging"), "not found"),
    ],
)
def test_errors_exit_2(scored: Registry, args: tuple[str, ...], message: str) -> None:
    result = scored.cli("alice", "check", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_an_unusable_registry_exits_2(scored: Registry) -> None:
    result = scored.cli(
        "alice", "check", MODEL, "1", "--gate", "staging", "--registry-uri", "governed+nosuch:///x"
    )
    assert result.exit_code == 2 and "Unsupported governed registry URI scheme" in result.stderr


# ------------------------------------------------------------------ metric provenance

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, in MLflow's milliseconds
PROVENANCE = load_policy_text(
    """
version: 1
gates:
  production:
    targets: {stages: [Production]}
    checks:
      metrics:
        accuracy: {condition: ">= 0.9", logged_before_request: true, not_by_requester: true}
        auc: {condition: "> 0.9", logged_before_request: true, not_by_requester: true}
        latency_ms: "< 200"
"""
)


@dataclass(frozen=True)
class Logged:
    """Runs and a logged model in a copy of the session's tracking store.

    Run ``by_carol`` (user carol) logs accuracy 0.91 at T0 and 0.95 at T0+60s, and
    latency_ms 150 at T0+30s. The logged model (source run ``by_carol``) holds auc 0.8
    logged by carol's run at T0+10s and auc 0.97 logged by val's run at T0+120s. Run
    ``forged`` (user mallory) logs accuracy with a timestamp far outside the calendar.
    """

    uri: str
    by_carol: str
    forged: str
    model_id: str


@pytest.fixture
def logged(tracking: Tracking, tmp_path: Path) -> Logged:
    # A copy, so this test writes runs without touching the store other workers read.
    copy = tmp_path / "tracking.db"
    shutil.copy(tracking.uri[len("sqlite:///") :], copy)
    uri = f"sqlite:///{copy}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(
        "provenance", artifact_location=str(tmp_path / "artifacts")
    )
    carol = client.create_run(experiment, tags={"mlflow.user": "carol"}).info.run_id
    val = client.create_run(experiment, tags={"mlflow.user": "val"}).info.run_id
    forged = client.create_run(experiment, tags={"mlflow.user": "mallory"}).info.run_id
    client.log_metric(carol, "accuracy", 0.91, timestamp=T0, step=0)
    client.log_metric(carol, "accuracy", 0.95, timestamp=T0 + 60_000, step=1)
    client.log_metric(carol, "latency_ms", 150, timestamp=T0 + 30_000)
    model_id = client.create_logged_model(experiment, source_run_id=carol).model_id
    client.log_metric(carol, "auc", 0.8, timestamp=T0 + 10_000, step=5, model_id=model_id)
    client.log_metric(val, "auc", 0.97, timestamp=T0 + 120_000, step=0, model_id=model_id)
    client.log_metric(forged, "accuracy", 0.99, timestamp=2**62)
    return Logged(uri, carol, forged, model_id)


def _version(run_id: str | None, model_id: str | None = None) -> ModelVersion:
    return ModelVersion(MODEL, "1", T0, run_id=run_id, model_id=model_id, current_stage="Staging")


def _at(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).replace(tzinfo=None)


def test_facts_record_when_and_by_whom_each_checked_value_was_logged(logged: Logged) -> None:
    mv = _version(logged.by_carol, logged.model_id)
    facts = version_facts(mv, tuple(PROVENANCE.gates.values()), logged.uri, None)
    # The logged model's newest auc wins over its older one; the run supplies the rest.
    assert dict(facts.metrics) == {"auc": 0.97, "accuracy": 0.95, "latency_ms": 150.0}
    assert dict(facts.metric_origins) == {
        "auc": MetricOrigin(_at(T0 + 120_000), "val"),
        "accuracy": MetricOrigin(_at(T0 + 60_000), "carol"),
        # No gate asks who logged latency_ms, so no run is looked up for it.
        "latency_ms": MetricOrigin(_at(T0 + 30_000), None),
    }


def test_provenance_checks_on_real_metrics(logged: Logged) -> None:
    gate = PROVENANCE.gates["production"]
    mv = _version(logged.by_carol, logged.model_id)
    facts = version_facts(mv, (gate,), logged.uri, None)
    requested = _at(T0 + 90_000)
    results = {
        r.name: (r.passed, r.actual)
        for r in evaluate_checks(gate, facts, request_time=requested, requester="carol")
    }
    assert results == {
        "metric accuracy": (True, "0.95"),
        "metric accuracy logged_before_request": (True, "logged 2026-01-01T00:01:00Z"),
        "metric accuracy not_by_requester": (False, "logged by carol, the requester"),
        "metric auc": (True, "0.97"),
        "metric auc logged_before_request": (
            False,
            "logged 2026-01-01T00:02:00Z, after the request (2026-01-01T00:01:30Z)",
        ),
        "metric auc not_by_requester": (True, "logged by val"),
        "metric latency_ms": (True, "150"),
    }


def test_a_timestamp_outside_the_calendar_is_an_unknown_time(logged: Logged) -> None:
    facts = version_facts(
        _version(logged.forged), tuple(PROVENANCE.gates.values()), logged.uri, None
    )
    assert facts.metrics["accuracy"] == 0.99
    assert facts.metric_origins["accuracy"] == MetricOrigin(None, "mallory")
    (result,) = [
        r
        for r in evaluate_checks(PROVENANCE.gates["production"], facts, requester="alice")
        if r.name == "metric accuracy logged_before_request"
    ]
    assert (result.passed, result.actual) == (False, "logging time unknown")
