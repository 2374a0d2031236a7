"""A CI shell step that holds only the server's URL and a user's credentials.

The step runs the installed ``mlflow-governance`` console script in ``bash`` with no
database URL, no policy file and no registry URI in its environment: ``check`` the gate,
``promote --wait`` (approvers approve through the REST API while it waits), then
``rollback``. Every audit row the step caused says ``identity_source: server``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import (
    API,
    GovServer,
    approve_when_waiting,
    governance_server,
    password_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("transports")]

CLI = str(Path(sys.executable).with_name("mlflow-governance"))
MODEL = "pipeline-model"

STEP = """\
set -euo pipefail
mlflow-governance check "$MODEL" "$VERSION" --gate production
mlflow-governance promote "$MODEL" "$VERSION" --to Staging
mlflow-governance promote "$MODEL" "$VERSION" --to Production --wait --timeout 300 \\
    --poll-interval 0.2
"""


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovServer]:
    with governance_server(tmp_path_factory.mktemp("pipeline")) as running:
        yield running


def step_env(gov: GovServer, user: str, **extra: str) -> dict[str, str]:
    """A CI job's environment: PATH, the server's URL and the user's credentials only."""
    return {
        "PATH": f"{Path(CLI).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "MLFLOW_TRACKING_URI": gov.url,
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password_of(user),
        **extra,
    }


def _register(gov: GovServer) -> None:
    with gov.as_user("alice") as client:
        client.create_registered_model(MODEL)
        for _ in range(2):
            client.create_model_version(
                MODEL, f"s3://bucket/{MODEL}/model", tags={"validation_status": "passed"}
            )


def test_check_promote_wait_and_rollback_from_a_shell_step(gov: GovServer) -> None:
    _register(gov)
    for version in (1, 2):
        process = subprocess.Popen(
            ["bash", "-c", STEP],
            env=step_env(gov, "carol", MODEL=MODEL, VERSION=str(version)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        log = approve_when_waiting(gov, process)
        assert process.wait(timeout=300) == 0, log
        out = process.stdout.read() if process.stdout else ""
        assert f"PASS: {MODEL} version {version} against gate production" in out, out
        assert f"{MODEL} version {version} is now at Production." in out, out
        assert "needs 2 approvals from role approver" in log
    with gov.as_user("oscar") as client:
        assert client.get_model_version(MODEL, "2").current_stage == "Production"

    # Roll back: carol asks (exit 3: a request waits), the approvers approve, v1 is back.
    rollback = subprocess.run(
        ["bash", "-c", f'mlflow-governance rollback "{MODEL}" --stage Production --json'],
        env=step_env(gov, "carol"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert rollback.returncode == 3, rollback.stderr
    import json

    asked = json.loads(rollback.stdout)
    assert (asked["status"], asked["version"]) == ("requested", 1)
    for approver in ("dave", "erin"):
        rid = asked["request"]["id"]
        gov.call(approver, "POST", "/requests/{request_id}/approve", json={}, request_id=rid)
    with gov.as_user("oscar") as client:
        assert client.get_model_version(MODEL, "1").current_stage == "Production"

    rows = gov.call("dave", "GET", "/audit", params={"model": MODEL, "limit": 1000})
    by_step = [row for row in rows if row["actor"] == "carol"]
    # The Staging moves and the requests are carol's (a passing check writes no row).
    assert {"transition_model_version_stage", "request_promotion"} <= {
        row["action"] for row in by_step
    }
    assert by_step and {row["identity_source"] for row in by_step} == {"server"}


def test_no_server_is_one_line_and_its_own_exit_code(gov: GovServer) -> None:
    env = step_env(gov, "carol", MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    result = subprocess.run(
        [CLI, "requests"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 5, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Cannot reach the governance server")
    assert "Traceback" not in result.stderr


def test_wrong_password_is_a_refusal_not_a_crash(gov: GovServer) -> None:
    env = step_env(gov, "carol", MLFLOW_TRACKING_PASSWORD="wrong")
    result = subprocess.run(
        [CLI, "whoami"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: ")


def test_api_path_constant_matches_the_server() -> None:
    from mlflow_governance.access.remote import API_PATH

    assert API_PATH == API
