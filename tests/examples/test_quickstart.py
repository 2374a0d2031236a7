"""The quickstart runs as a user would run it: from an empty folder, in its own process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# One run serves every test below: keep them on one xdist worker (make test uses loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("quickstart")]

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"

# An `audit list` table row: id, time, actor, action, model, version, decision, reason.
AUDIT_ROW = re.compile(r"^(\d+)\s+\S+Z\s+(\S+)\s+(\S+)\s+iris-classifier\s+(\S+)\s+allow\s", re.M)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    folder = tmp_path_factory.mktemp("quickstart")
    # As on a fresh machine: no policy, user or URI from the developer's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "_MLFLOW_"))}
    result = subprocess.run(
        [sys.executable, str(QUICKSTART)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert (folder / "mlflow.db").is_file()
    return result


def section(output: str, title: str) -> str:
    """The text printed under the heading starting with ``title``, up to the next heading."""
    parts = re.split(r"^=== (.*) ===$", output, flags=re.M)
    # parts: [preamble, title1, body1, title2, body2, ...]
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        if heading.startswith(title):
            return body
    raise AssertionError(f"no section {title!r} in:\n{output}")


def test_says_it_runs_audit_only(run):
    assert "No policy is configured, so the plugin runs audit-only" in section(run.stdout, "Setup")
    assert "alice (identity source: asserted)" in section(run.stdout, "alice trains")


def test_prints_the_audit_rows_of_both_users(run):
    rows = AUDIT_ROW.findall(section(run.stdout, "The audit trail"))
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    actions = [(actor, action) for _, actor, action, _ in rows]
    assert actions[:3] == [
        ("alice", "create_registered_model"),
        ("alice", "create_model_version"),
        ("alice", "create_model_version"),
    ]
    assert ("bob", "transition_model_version_stage") in actions
    assert actions.count(("bob", "set_registered_model_alias")) == 2


def test_history_at_a_past_time_shows_the_first_champion(run):
    past = section(run.stdout, "History").split("--at ")[1]
    assert re.search(r"^stage\s+Production\s+1\s", past, re.M)
    assert re.search(r"^alias\s+champion\s+1\s", past, re.M)


def test_predicts_with_the_champion(run):
    predicting = section(run.stdout, "Predicting with models:/iris-classifier@champion")
    assert "@champion is version 2" in predicting
    match = re.search(r"predictions for 3 test flowers: \[(.*)\]", predicting)
    assert match
    assert set(re.findall(r"'(\w+)'", match.group(1))) <= {"setosa", "versicolor", "virginica"}


def test_verify_is_ok_and_covers_every_row(run):
    match = re.search(r"OK: (\d+) audit rows, chain intact", section(run.stdout, "Verifying"))
    assert match
    assert int(match.group(1)) == len(AUDIT_ROW.findall(section(run.stdout, "The audit trail")))


def test_is_quiet(run):
    assert "Warning" not in run.stderr, run.stderr
    assert "INFO" not in run.stderr, run.stderr
