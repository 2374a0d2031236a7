"""The engine stays pure: importing it pulls in neither MLflow, Flask nor a database."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import mlflow_governance.policy
heavy = sorted(
    name for name in sys.modules
    if name.split(".")[0] in {"mlflow", "flask", "sqlalchemy", "boto3", "requests"}
)
print(",".join(heavy))
"""


def test_importing_the_policy_engine_loads_no_framework() -> None:
    # A fresh interpreter: this test session may already have imported MLflow elsewhere.
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
