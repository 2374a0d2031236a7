"""A governed SQLite registry with the team policy, and the gitops action over it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlflow_governance.application.gitops import GitOpsActions
from tests.workflow.conftest import Registry, make_registry

PASSED = {"validation_status": "passed"}


class Service(GitOpsActions):
    """Only the mixin under test, on a store (GovernanceService adds it among the others)."""


@pytest.fixture
def reg(sqlite_registry_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A fresh governed SQLite registry; ``fraud`` v1 and v2 by alice, in Staging,
    validated, seeded without a policy; then the tutorial's team policy in force."""
    registry = make_registry(sqlite_registry_uri, monkeypatch, None)
    for _ in range(2):
        registry.seed("fraud", tags=PASSED, stages=["Staging"])
    registry.use_policy("team")
    yield registry
    registry.store.engine.dispose()


@pytest.fixture
def service(reg: Registry) -> Service:
    return Service(reg.store)
