"""Paths and helpers shared by the policy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_governance.exceptions import PolicyFileError, PolicyIssue
from mlflow_governance.policy import load_policy

EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"
INVALID = EXAMPLES / "invalid"


def issues_of(name: str) -> tuple[PolicyIssue, ...]:
    """The issues the loader reports for ``examples/policies/invalid/<name>.yaml``."""
    with pytest.raises(PolicyFileError) as caught:
        load_policy(INVALID / f"{name}.yaml")
    return caught.value.issues


def lines(issues: tuple[PolicyIssue, ...]) -> dict[str, int]:
    """Field path to line, for compact assertions."""
    return {issue.field: issue.line for issue in issues}
