"""The entry point: which URIs reach the governed store, and how bad ones fail.

MLflow resolves ``governed+<database>`` registry URIs through the entry points of group
``mlflow.model_registry_store`` to :func:`mlflow_governance.entry.build_store`; that
builder turns every configuration problem into one readable ``MlflowException``.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path

import mlflow
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from mlflow.exceptions import MlflowException
from mlflow.server.constants import READ_REPLICA_BACKEND_STORE_URI_ENV_VAR
from mlflow.store.artifact.utils.models import get_model_name_and_version
from mlflow.tracking._model_registry.utils import _get_store_registry
from mlflow.utils.workspace_context import ServerWorkspaceContext

from mlflow_governance import config
from mlflow_governance import db as schema
from mlflow_governance.audit.query import AuditFilter, list_rows
from mlflow_governance.cli import main
from mlflow_governance.entry import build_store
from mlflow_governance.store import GovernedStore, GovernedWorkspaceStore
from tests.databases import POSTGRES_SERVER, SERVERS

#: The schemes of SPEC section 1, each with a URI of that form.
SPEC_URIS = {
    "governed+sqlite": "governed+sqlite:///reg.db",
    "governed+postgresql": "governed+postgresql://user@db.example/registry",
    "governed+postgresql+psycopg": "governed+postgresql+psycopg://user@db.example/registry",
    "governed+postgresql+psycopg2": "governed+postgresql+psycopg2://user@db.example/registry",
    "governed+mysql": "governed+mysql://user@db.example/registry",
    "governed+mysql+pymysql": "governed+mysql+pymysql://user@db.example/registry",
}
SUPPORTED_LIST = ", ".join(f"{scheme}://" for scheme in SPEC_URIS)


@pytest.fixture
def tracking_uri(db_url_for: Callable[[str], str]) -> str:
    """A tracking store for MlflowClient (which opens one at once), never ./mlflow.db."""
    return db_url_for("sqlite")


def _audit(store: GovernedStore) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        return list_rows(conn, AuditFilter())


# ---------------------------------------------------------------------- resolution


@pytest.mark.parametrize("uri", list(SPEC_URIS.values()), ids=list(SPEC_URIS))
def test_every_spec_scheme_resolves_to_the_governed_builder(uri: str) -> None:
    assert _get_store_registry().get_store_builder(uri) is build_store


def test_one_entry_point_per_supported_scheme() -> None:
    ours = {
        ep.name: ep.value
        for ep in entry_points(group="mlflow.model_registry_store")
        if ep.value.startswith("mlflow_governance.")
    }
    assert ours == dict.fromkeys(SPEC_URIS, "mlflow_governance.entry:build_store")
    assert {f"governed+{suffix}" for suffix in config.SUPPORTED_SUFFIXES} == set(SPEC_URIS)


def test_mlflow_client_uses_the_governed_store_and_model_uris_resolve(
    sqlite_registry_uri: str, fresh_mlflow_stores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", sqlite_registry_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_registry_uri.removeprefix("governed+"))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    client = mlflow.MlflowClient()
    store = client._get_registry_client().store
    assert isinstance(store, GovernedStore)
    client.create_registered_model("fraud")
    client.create_model_version("fraud", "s3://models/fraud/1")
    client.transition_model_version_stage("fraud", "1", "Production")
    client.set_registered_model_alias("fraud", "champion", "1")
    for model_uri in ("models:/fraud/1", "models:/fraud@champion", "models:/fraud/Production"):
        name, version = get_model_name_and_version(client, model_uri)
        assert (name, str(version)) == ("fraud", "1"), model_uri
    assert [(r["actor"], r["action"]) for r in _audit(store)] == [
        ("alice", "create_registered_model"),
        ("alice", "create_model_version"),
        ("alice", "transition_model_version_stage"),
        ("alice", "set_registered_model_alias"),
    ]


# ---------------------------------------------------------------------- unsupported URIs


@pytest.mark.parametrize(
    "uri",
    [
        "governed+foo:///x",
        "governed+oracle://db/x",
        "governed+mssql://db/x",
        "sqlite:///x.db",
        "governed+:///x",
    ],
)
def test_build_store_refuses_an_unsupported_scheme_listing_the_supported_ones(uri: str) -> None:
    with pytest.raises(MlflowException) as info:
        build_store(uri)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert f"Supported schemes: {SUPPORTED_LIST}." in info.value.message
    assert "Example: governed+sqlite:///registry.db" in info.value.message


def test_unsupported_scheme_through_mlflow_lists_the_governed_schemes(
    fresh_mlflow_stores: None, tracking_uri: str
) -> None:
    # No entry point is named governed+oracle, so MLflow itself refuses the URI; its message
    # lists every scheme it knows, ours included. MlflowClient reports it as FEATURE_DISABLED.
    with pytest.raises(MlflowException) as info:
        _get_store_registry().get_store("governed+oracle://x")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as client_info:
        mlflow.MlflowClient(
            tracking_uri, registry_uri="governed+oracle://x"
        ).search_registered_models()
    for error in (info.value, client_info.value):
        assert "governed+oracle://x" in error.message
        for scheme in SPEC_URIS:
            assert f"'{scheme}'" in error.message


# ---------------------------------------------------------------------- unreachable databases


@pytest.mark.parametrize(
    "uri",
    [
        "governed+postgresql+psycopg://postgres:s3cr3t-pw@127.0.0.1:1/nope",
        "governed+postgresql://postgres:s3cr3t-pw@127.0.0.1:1/nope",
        "governed+postgresql+psycopg2://postgres:s3cr3t-pw@127.0.0.1:1/nope",
        "governed+mysql+pymysql://root:s3cr3t-pw@127.0.0.1:1/nope",
        "governed+postgresql+psycopg://postgres@127.0.0.1:1/nope",
    ],
    ids=["psycopg", "bare-postgresql", "psycopg2", "pymysql", "no-password"],
)
def test_unreachable_server_fails_fast_with_a_clean_redacted_message(
    uri: str, fresh_mlflow_stores: None, tracking_uri: str
) -> None:
    started = time.monotonic()
    with pytest.raises(MlflowException) as info:
        build_store(uri)
    assert time.monotonic() - started < 10
    message = info.value.message
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message.startswith("Cannot reach the registry database at ")
    assert "@127.0.0.1:1/nope: " in message and "refused" in message.lower()
    assert "Check the host, port, credentials" in message
    assert "s3cr3t-pw" not in message and "Traceback" not in message
    assert "\n" not in message
    if "s3cr3t-pw" in uri:
        assert ":***@127.0.0.1:1/nope" in message
    # The same through MLflow's own client, which builds the store lazily.
    started = time.monotonic()
    with pytest.raises(MlflowException) as client_info:
        mlflow.MlflowClient(tracking_uri, registry_uri=uri).get_registered_model("m")
    assert time.monotonic() - started < 10
    assert client_info.value.message == message


def test_a_password_in_the_query_string_is_redacted_too() -> None:
    with pytest.raises(MlflowException) as info:
        build_store("governed+postgresql+psycopg://postgres@127.0.0.1:1/nope?password=s3cr3t-pw")
    assert info.value.message.startswith("Cannot reach the registry database at ")
    assert "s3cr3t-pw" not in info.value.message


@pytest.mark.skipif(
    importlib.util.find_spec("MySQLdb") is not None, reason="mysqlclient is installed here"
)
def test_missing_driver_is_a_clean_redacted_error() -> None:
    with pytest.raises(MlflowException) as info:
        build_store("governed+mysql://root:s3cr3t-pw@127.0.0.1:1/nope")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "database driver for mysql://root:***@127.0.0.1:1/nope is not installed" in (
        info.value.message
    )
    assert "MySQLdb" in info.value.message
    assert "s3cr3t-pw" not in info.value.message


@pytest.mark.skipif(
    importlib.util.find_spec("MySQLdb") is not None, reason="mysqlclient is installed here"
)
def test_missing_driver_hint_names_a_fix_that_works() -> None:
    with pytest.raises(MlflowException) as info:
        build_store("governed+mysql://root@127.0.0.1:1/nope")
    assert "mysqlclient" in info.value.message or "mysql+pymysql" in info.value.message


def test_missing_database_on_a_reachable_server_is_a_clean_error() -> None:
    problem = SERVERS["postgresql"].reachable()
    if problem:
        pytest.skip(problem)
    uri = f"governed+{POSTGRES_SERVER}/no_such_db_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with pytest.raises(MlflowException) as info:
        build_store(uri)
    assert time.monotonic() - started < 10
    assert info.value.message.startswith("Cannot reach the registry database at ")
    assert "does not exist" in info.value.message
    assert "\n" not in info.value.message


# ---------------------------------------------------------------------- schema revisions


@pytest.fixture
def newer_schema(db_url: str) -> Iterator[str]:
    """A registry whose governance tables claim a revision from the future."""
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        revision = conn.execute(sa.text(f"SELECT version_num FROM {schema.VERSION_TABLE}")).scalar()
        conn.execute(sa.text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'"))
    try:
        yield f"governed+{db_url}"
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE {schema.VERSION_TABLE} SET version_num = :r"), {"r": revision}
            )
        engine.dispose()


def test_tables_from_a_newer_plugin_release_are_refused(newer_schema: str) -> None:
    with pytest.raises(MlflowException) as info:
        build_store(newer_schema)
    message = info.value.message
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "revision '9999'" in message
    assert "created by a newer plugin release" in message
    assert "pip install -U mlflow-governance" in message
    result = CliRunner().invoke(main, ["db", "upgrade", "--registry-uri", newer_schema])
    assert result.exit_code == 1
    assert "newer plugin release" in result.output and "Traceback" not in result.output


def test_known_revisions_end_at_the_head() -> None:
    assert schema.KNOWN_REVISIONS[-1] == schema.HEAD_REVISION
    versions = Path(schema.__file__).parent / "migrations" / "versions"
    shipped = sorted(p.name.split("_", 1)[0] for p in versions.glob("[0-9]*_*.py"))
    assert tuple(shipped) == schema.KNOWN_REVISIONS


# ---------------------------------------------------------------------- server options


def test_enable_workspaces_gives_the_workspace_aware_store(
    sqlite_registry_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = build_store(sqlite_registry_uri)
    assert type(plain) is GovernedStore and plain.supports_workspaces is False
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    store = build_store(sqlite_registry_uri)
    assert isinstance(store, GovernedWorkspaceStore) and isinstance(store, GovernedStore)
    assert store.supports_workspaces is True
    with pytest.raises(MlflowException, match="Active workspace is required"):
        store.create_registered_model("nowhere")
    assert _audit(store) == []
    with ServerWorkspaceContext("team-a"):
        store.create_registered_model("fraud")
        assert [m.name for m in store.search_registered_models()] == ["fraud"]
    with ServerWorkspaceContext("team-b"):
        assert store.search_registered_models() == []
    assert [(r["action"], r["model"]) for r in _audit(store)] == [
        ("create_registered_model", "fraud"),
    ]


def test_audit_rows_tell_workspaces_apart(
    sqlite_registry_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    store = build_store(sqlite_registry_uri)
    for workspace in ("team-a", "team-b"):
        with ServerWorkspaceContext(workspace):
            store.create_registered_model("fraud")
    first, second = _audit(store)
    assert "team-a" in repr(first) and "team-b" in repr(second)


def test_read_replica_serves_reads_while_writes_and_audit_go_to_the_primary(
    db_url_for: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, replica = db_url_for("sqlite"), db_url_for("sqlite")
    # The replica lags: it holds a model the primary has, the primary's new writes not yet.
    build_store(f"governed+{replica}").create_registered_model("replicated")
    monkeypatch.setenv(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR, replica)
    store = build_store(f"governed+{primary}")
    assert store.read_engine is not None
    assert str(store.read_engine.url) == replica

    store.create_registered_model("fraud")
    store.create_model_version("fraud", "s3://models/fraud/1")

    assert [m.name for m in store.search_registered_models()] == ["replicated"]
    assert store.get_registered_model("replicated").name == "replicated"
    with pytest.raises(MlflowException) as info:
        store.get_registered_model("fraud")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    monkeypatch.delenv(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR)
    primary_store = build_store(f"governed+{primary}")
    assert [m.name for m in primary_store.search_registered_models()] == ["fraud"]
    assert [(r["action"], r["model"]) for r in _audit(primary_store)] == [
        ("create_registered_model", "fraud"),
        ("create_model_version", "fraud"),
    ]
    replica_store = build_store(f"governed+{replica}")
    assert [(r["action"], r["model"]) for r in _audit(replica_store)] == [
        ("create_registered_model", "replicated"),
    ]


def test_read_replica_given_in_governed_form_is_accepted(
    db_url_for: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, replica = db_url_for("sqlite"), db_url_for("sqlite")
    monkeypatch.setenv(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR, f"governed+{replica}")
    store = build_store(f"governed+{primary}")
    assert store.read_engine is not None and str(store.read_engine.url) == replica
