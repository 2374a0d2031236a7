"""``check NAME VERSION --gate G``: exit 0 pass, 1 fail, 2 error, against real MLflow data.

strict.yaml's staging gate wants ``accuracy >= 0.9`` and a signature. The versions are
registered (with their run ids) from runs logged in a SQLite tracking store and from
real logged scikit-learn models, one with a signature and one without.
"""

from __future__ import annotations

import pytest

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
