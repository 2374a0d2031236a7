"""Shared fixtures: real SQLite, PostgreSQL and MariaDB registries, identities, stores."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import REQUIRE, SERVERS, wipe

BACKENDS = ("sqlite", "postgresql", "mysql")


def pytest_configure(config: pytest.Config) -> None:
    # Tests build their own stores; the store warning about the audit-only default is
    # expected there and would only add noise.
    warnings.filterwarnings("ignore", message="mlflow-governance: no policy configured")
    os.environ.setdefault("MLFLOW_GOVERNANCE_POLICY_REFRESH", "0")


@pytest.fixture(scope="session")
def _worker_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking store of this worker's own, for clients built without a tracking URI.

    MLflow's default is ``sqlite:///mlflow.db`` in the working directory, which parallel
    workers would create and migrate at the same time (and which would litter the repo).
    """
    return f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, _worker_tracking_uri: str) -> None:
    for var in (
        "MLFLOW_GOVERNANCE_POLICY",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_TRACKING_USERNAME",
        "_MLFLOW_SERVER_FILE_STORE",
        "_MLFLOW_SERVER_REGISTRY_STORE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _worker_tracking_uri)
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY_REFRESH", "0")


def _worker(request: pytest.FixtureRequest) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry database with MLflow's and our tables, built once and copied per test."""
    from mlflow_governance.store import GovernedStore

    path = tmp_path_factory.mktemp("template") / "registry.db"
    store = GovernedStore(f"sqlite:///{path}")
    store.engine.dispose()
    return path


def _server_database(backend: str, request: pytest.FixtureRequest) -> Iterator[str]:
    server = SERVERS[backend]
    problem = server.reachable()
    if problem:
        if REQUIRE:
            pytest.fail(f"{problem} (MLFLOW_GOVERNANCE_REQUIRE_DATABASES=1)")
        pytest.skip(problem)
    with server.database(f"{backend[:2]}_{_worker(request)}") as url:
        from mlflow_governance.store import GovernedStore

        GovernedStore(url)
        yield url


@pytest.fixture(scope="session")
def _postgres_db(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _server_database("postgresql", request)


@pytest.fixture(scope="session")
def _mysql_db(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _server_database("mysql", request)


@pytest.fixture
def db_url_for(request: pytest.FixtureRequest, tmp_path: Path, _sqlite_template: Path):
    """Factory: a clean plain database URL for a backend (sqlite, postgresql, mysql)."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            path = tmp_path / f"registry-{len(list(tmp_path.glob('registry-*.db')))}.db"
            shutil.copy(_sqlite_template, path)
            return f"sqlite:///{path}"
        url = request.getfixturevalue("_postgres_db" if backend == "postgresql" else "_mysql_db")
        wipe(url)
        return url

    return make


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using it runs on SQLite, PostgreSQL and MariaDB."""
    return request.param


@pytest.fixture
def db_url(backend: str, db_url_for) -> str:
    """A clean plain database URL on the parametrised backend."""
    return db_url_for(backend)


@pytest.fixture
def registry_uri(db_url: str) -> str:
    """The governed registry URI for :func:`db_url`."""
    return f"governed+{db_url}"


@pytest.fixture
def sqlite_registry_uri(db_url_for) -> str:
    """A governed SQLite registry URI (for tests that need no server backends)."""
    return "governed+" + db_url_for("sqlite")


@pytest.fixture
def store(registry_uri: str):
    """A governed store on the parametrised backend."""
    from mlflow_governance.entry import build_store

    return build_store(registry_uri)


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch):
    """Act as a user in local mode (sets MLFLOW_TRACKING_USERNAME)."""

    def switch(name: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", name)

    return switch


@pytest.fixture
def fresh_mlflow_stores() -> Iterator[None]:
    """Forget MLflow's cached stores so a test's URIs and environment take effect."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    registry_utils._get_store_registry()._get_store_with_resolved_uri.cache_clear()
    tracking_utils._tracking_store_registry._get_store_with_resolved_uri.cache_clear()
    yield
    registry_utils._get_store_registry()._get_store_with_resolved_uri.cache_clear()
    tracking_utils._tracking_store_registry._get_store_with_resolved_uri.cache_clear()
