"""Who is acting: resolved at every call, never cached per process or per store."""

from __future__ import annotations

import getpass
import threading
from collections.abc import Callable

import flask
import mlflow
import pytest
from mlflow.entities.model_registry import RegisteredModelTag

from mlflow_governance.audit.query import AuditFilter, list_rows
from mlflow_governance.entry import build_store
from mlflow_governance.identity import (
    ANONYMOUS,
    SOURCE_ASSERTED,
    SOURCE_SERVER,
    SOURCE_UNAUTHENTICATED,
    Identity,
    acting_as,
    current_identity,
)
from mlflow_governance.store import GovernedStore


def _actors(store: GovernedStore) -> list[tuple[str, str, str | None, str | None]]:
    with store.engine.connect() as conn:
        return [
            (r["actor"], r["identity_source"], r["client_address"], r["user_agent"])
            for r in list_rows(conn, AuditFilter())
        ]


@pytest.fixture
def client(sqlite_registry_uri: str, fresh_mlflow_stores: None) -> mlflow.MlflowClient:
    """MLflow's own client on a governed registry (its store is cached by MLflow)."""
    return mlflow.MlflowClient(
        sqlite_registry_uri.removeprefix("governed+"), registry_uri=sqlite_registry_uri
    )


def test_local_mode_asserts_mlflow_tracking_username(as_user: Callable[[str], None]) -> None:
    as_user("alice")
    assert current_identity() == Identity("alice", SOURCE_ASSERTED)


def test_local_mode_falls_back_to_the_os_login() -> None:
    ident = current_identity()
    assert (ident.user, ident.source) == (getpass.getuser(), SOURCE_ASSERTED)
    assert ident.client_address is None and ident.user_agent is None


def test_one_cached_store_records_each_call_as_its_own_actor(
    client: mlflow.MlflowClient, sqlite_registry_uri: str, as_user: Callable[[str], None]
) -> None:
    as_user("alice")
    client.create_registered_model("fraud")
    as_user("bob")
    client.set_registered_model_tag("fraud", "owner", "bob")
    # MLflow handed out one cached store for both calls: the actor was not fixed at creation.
    again = mlflow.MlflowClient(
        sqlite_registry_uri.removeprefix("governed+"), registry_uri=sqlite_registry_uri
    )
    store = client._get_registry_client().store
    assert again._get_registry_client().store is store
    as_user("carol")
    again.create_model_version("fraud", "s3://models/fraud/1")
    assert _actors(store) == [
        ("alice", SOURCE_ASSERTED, None, None),
        ("bob", SOURCE_ASSERTED, None, None),
        ("carol", SOURCE_ASSERTED, None, None),
    ]
    assert store.get_model_version("fraud", 1).user_id == "carol"


def test_acting_as_overrides_the_environment_for_the_block(
    client: mlflow.MlflowClient, as_user: Callable[[str], None]
) -> None:
    as_user("alice")
    dave = Identity("dave", SOURCE_SERVER, frozenset({"release-managers"}), "10.0.0.5", "ua/1")
    with acting_as(dave) as entered:
        assert entered is dave
        assert current_identity() is dave
        client.create_registered_model("fraud")
        with acting_as(Identity("erin", SOURCE_SERVER)):
            assert current_identity().user == "erin"
        assert current_identity() is dave
    assert current_identity() == Identity("alice", SOURCE_ASSERTED)
    client.set_registered_model_tag("fraud", "k", "v")
    assert _actors(client._get_registry_client().store) == [
        ("dave", SOURCE_SERVER, "10.0.0.5", "ua/1"),
        ("alice", SOURCE_ASSERTED, None, None),
    ]


def test_acting_as_is_restored_after_an_error() -> None:
    with pytest.raises(RuntimeError), acting_as(Identity("dave", SOURCE_SERVER)):
        raise RuntimeError("boom")
    assert current_identity().source == SOURCE_ASSERTED


def test_acting_as_does_not_leak_between_threads(as_user: Callable[[str], None]) -> None:
    as_user("alice")
    both_inside = threading.Barrier(2, timeout=30)
    seen: dict[str, str] = {}

    def worker(name: str) -> None:
        with acting_as(Identity(name, SOURCE_SERVER)):
            both_inside.wait()  # both identities are set at the same moment
            seen[name] = current_identity().user

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("dave", "erin")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert seen == {"dave": "dave", "erin": "erin"}
    assert current_identity().user == "alice"


def test_inside_a_flask_request_without_our_app_the_caller_is_anonymous(
    client: mlflow.MlflowClient, as_user: Callable[[str], None]
) -> None:
    # The server's own MLFLOW_TRACKING_USERNAME or OS login is not the caller's identity.
    as_user("server-operator")
    app = flask.Flask("plain-mlflow-server")
    with app.test_request_context(
        "/ajax-api/2.0/mlflow/registered-models/create",
        method="POST",
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
        headers={"User-Agent": "Mozilla/5.0 (MLflow UI)"},
    ):
        ident = current_identity()
        assert ident == Identity(
            ANONYMOUS,
            SOURCE_UNAUTHENTICATED,
            client_address="192.0.2.7",
            user_agent="Mozilla/5.0 (MLflow UI)",
        )
        client.create_registered_model("fraud")
    assert current_identity().user == "server-operator"
    assert _actors(client._get_registry_client().store) == [
        (ANONYMOUS, SOURCE_UNAUTHENTICATED, "192.0.2.7", "Mozilla/5.0 (MLflow UI)"),
    ]


def test_acting_as_wins_inside_a_request() -> None:
    app = flask.Flask("governed-server")
    with (
        app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.7"}),
        acting_as(Identity("dave", SOURCE_SERVER, client_address="192.0.2.7")),
    ):
        assert current_identity().user == "dave"


@pytest.mark.parametrize("marker", ["_MLFLOW_SERVER_FILE_STORE", "_MLFLOW_SERVER_REGISTRY_STORE"])
def test_in_a_server_process_without_our_app_the_caller_is_anonymous(
    marker: str,
    monkeypatch: pytest.MonkeyPatch,
    as_user: Callable[[str], None],
    sqlite_registry_uri: str,
) -> None:
    # mlflow server/ui sets these for its workers; outside a request (a background job)
    # there is no caller address either.
    as_user("server-operator")
    monkeypatch.setenv(marker, sqlite_registry_uri)
    assert current_identity() == Identity(ANONYMOUS, SOURCE_UNAUTHENTICATED)
    with acting_as(Identity("dave", SOURCE_SERVER)):
        assert current_identity().user == "dave"
    monkeypatch.delenv(marker)
    assert current_identity() == Identity("server-operator", SOURCE_ASSERTED)


def test_server_process_marker_applies_to_writes(
    sqlite_registry_uri: str, monkeypatch: pytest.MonkeyPatch, as_user: Callable[[str], None]
) -> None:
    as_user("server-operator")
    store = build_store(sqlite_registry_uri)
    monkeypatch.setenv("_MLFLOW_SERVER_FILE_STORE", sqlite_registry_uri.removeprefix("governed+"))
    store.create_registered_model("fraud")
    monkeypatch.delenv("_MLFLOW_SERVER_FILE_STORE")
    store.set_registered_model_tag("fraud", RegisteredModelTag("k", "v"))
    assert _actors(store) == [
        (ANONYMOUS, SOURCE_UNAUTHENTICATED, None, None),
        ("server-operator", SOURCE_ASSERTED, None, None),
    ]
