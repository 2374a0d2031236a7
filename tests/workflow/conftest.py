"""Fixtures of the workflow tests: a governed registry driven as several users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_governance.audit.history import history, holders_at
from mlflow_governance.audit.query import AuditFilter, list_rows, verify
from mlflow_governance.client import GovernanceClient
from mlflow_governance.entry import build_store
from tests.workflow import (
    Cli,
    Tracking,
    add_version,
    alias_of,
    no_policy,
    policy_path,
    session_root,
    stages_of,
    tracking_assets,
)


@pytest.fixture(scope="session")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Tracking:
    """Real runs and logged models in a SQLite tracking store, built once per session."""
    return tracking_assets(session_root(tmp_path_factory.getbasetemp()))


@dataclass
class Registry:
    """A governed registry and the ways to drive it: stock client, Python API, CLI."""

    uri: str
    store: Any
    mlflow: MlflowClient
    gov: GovernanceClient
    cli: Cli
    monkeypatch: pytest.MonkeyPatch

    def use_policy(self, name: str) -> None:
        """Enforce ``tests/workflow/policies/<name>.yaml`` (or an example) from now on."""
        self.monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", policy_path(name))

    def as_user(self, user: str) -> None:
        self.monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)

    def seed(self, model: str, **kwargs: Any) -> int:
        """Register a version without any policy in the way (see ``add_version``)."""
        with no_policy():
            return add_version(self.store, model, **kwargs)

    def fails(self, user: str, call: Callable[[], Any]) -> MlflowException:
        """Run ``call`` as ``user``; it must raise an MlflowException, returned."""
        self.as_user(user)
        with pytest.raises(MlflowException) as info:
            call()
        return info.value

    def run(self, user: str, call: Callable[[], Any]) -> Any:
        """Run ``call`` as ``user`` and return its result."""
        self.as_user(user)
        return call()

    def stages(self, model: str) -> dict[int, str]:
        return stages_of(self.store, model)

    def alias(self, model: str, alias: str) -> int | None:
        return alias_of(self.store, model, alias)

    def request(self, request_id: int) -> dict[str, Any]:
        from mlflow_governance.workflow.promotion import Workflow

        return Workflow(self.store).get(request_id).to_dict()

    def audit(self, **kwargs: Any) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            return list_rows(conn, AuditFilter(**kwargs))

    def assert_explained(self, model: str) -> None:
        """The audit log replays to the registry's stages and aliases; its chain verifies."""
        with self.store.engine.connect() as conn:
            held = holders_at(history(conn, model))
            assert verify(conn).ok
        replayed = {(h.kind, h.name, h.version) for h in held}
        actual = {
            ("stage", stage, version)
            for version, stage in self.stages(model).items()
            if stage in ("Staging", "Production")
        }
        actual |= {("alias", alias, version) for alias, version in _aliases(self.store, model)}
        assert replayed == actual


def _aliases(store: Any, model: str) -> list[tuple[str, int]]:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    entity = SqlAlchemyStore.get_registered_model(store, model)
    return [(alias, int(version)) for alias, version in entity.aliases.items()]


def make_registry(uri: str, monkeypatch: pytest.MonkeyPatch, tracking_uri: str | None) -> Registry:
    """A :class:`Registry` on ``uri`` (the environment names it for the CLI and clients)."""
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    if tracking_uri is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    store = build_store(uri, tracking_uri)
    return Registry(
        uri=uri,
        store=store,
        mlflow=MlflowClient(tracking_uri=tracking_uri, registry_uri=uri),
        gov=GovernanceClient(uri),
        cli=Cli(uri),
        monkeypatch=monkeypatch,
    )


@pytest.fixture
def reg(sqlite_registry_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A fresh governed SQLite registry (no policy until ``use_policy``)."""
    registry = make_registry(sqlite_registry_uri, monkeypatch, None)
    yield registry
    registry.store.engine.dispose()
