"""The CI/CD demo (``make demo``) runs from an empty folder and tells the whole story."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cicd-story")]

STORY = Path(__file__).resolve().parents[2] / "examples" / "cicd_story.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("cicd-story")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "_MLFLOW_"))}
    result = subprocess.run(
        [sys.executable, str(STORY)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return folder, result.stdout


def test_v1_passes_v2_fails_v3_replaces_v1(run: tuple[Path, str]) -> None:
    _, out = run
    assert "PASS: fraud-detector version 1 against gate production" in out
    assert "FAIL: fraud-detector version 2 against gate production" in out
    assert "The gate's checks fail for version 2: the pipeline stops here." in out
    assert "PASS: fraud-detector version 3 against gate production" in out
    assert "  version 1: Archived\n  version 2: None\n  version 3: Production" in out


def test_the_events_arrive_signed(run: tuple[Path, str]) -> None:
    _, out = run
    assert "(0 forged)" in out
    lines = out.split("The receiver verified", 1)[1].split("===", 1)[0]
    assert "promotion.requested          fraud-detector/3     by svc-ci" in lines
    assert "promotion.applied            fraud-detector/3     by erin" in lines
    # Archiving version 1 on the way is a transition, not an applied promotion of v1.
    assert "promotion.applied            fraud-detector/1" in lines  # v1's own promotion
    assert lines.count("promotion.applied") == 2


def test_the_manifests_name_the_approved_version(run: tuple[Path, str]) -> None:
    folder, out = run
    assert "fraud-detector version 3 holds Production (request #2, approved by dave, erin)" in out
    deployment = yaml.safe_load((folder / "deploy/fraud-detector/deployment.yaml").read_text())
    command = " ".join(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "models:/fraud-detector/3" in command


def test_the_rollback_goes_through_a_request_and_history_shows_it(run: tuple[Path, str]) -> None:
    _, out = run
    assert "Rollback of fraud-detector Production to version 1 requested: request #3" in out
    assert "Production holds version 1 again." in out
    history = out.split("mlflow-governance history fraud-detector", 1)[1]
    assert "dave    stage  Production  1        Archived    Production" in history
    assert "OK: " in out and "chain intact" in out
