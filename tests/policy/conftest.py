"""The example policies are the fixtures: tests read as a specification of those files."""

from __future__ import annotations

import pytest

from mlflow_governance.policy import Policy, load_policy
from tests.policy._support import EXAMPLES


@pytest.fixture(scope="session")
def open_policy() -> Policy:
    return load_policy(EXAMPLES / "open.yaml")


@pytest.fixture(scope="session")
def team() -> Policy:
    return load_policy(EXAMPLES / "team.yaml")


@pytest.fixture(scope="session")
def strict() -> Policy:
    return load_policy(EXAMPLES / "strict.yaml")


@pytest.fixture(scope="session")
def platform() -> Policy:
    return load_policy(EXAMPLES / "platform.yaml")
