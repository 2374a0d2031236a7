"""MLflow's own UI and REST API on a governed registry, served by stock ``mlflow ui``/``server``.

Nobody authenticates callers on a server started without our app, so every write is
audited as ``anonymous`` (identity source ``unauthenticated``) with the caller's address
and user agent, never as the OS user the server runs as (SPEC section 2). The requests
below are the ones MLflow's web UI sends, to ``/ajax-api/2.0/mlflow/...``.

One server per kind (``mlflow ui``, ``mlflow server``) per module; each kind has its own
xdist group, port and directory, so both run in parallel under ``--dist loadgroup``.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from mlflow_governance.audit.query import verify
from mlflow_governance.audit.tables import audit_log
from tests.servers import mlflow_server

pytestmark = pytest.mark.slow

USER_AGENT = "mlflow-governance-tests/1.0 (ui-rest)"
#: Set in the server's environment to prove a server never records a local-mode identity.
SERVER_ENV_USER = "server-env-user"

# Anonymous callers may do anything on models named ui-*, nothing elsewhere: enough to see
# both a governed write and a refusal go through MLflow's own REST layer.
POLICY = """\
version: 1
mode: enforce
roles:
  maintainer: ["*"]
bindings:
  - role: maintainer
    principals: ["user:anonymous"]
    models: ["ui-*"]
"""


@dataclass(frozen=True)
class Served:
    """A running server with the database it writes to."""

    kind: str
    url: str
    db_path: Path

    def engine(self) -> sa.Engine:
        return sa.create_engine(f"sqlite:///{self.db_path}", poolclass=sa.pool.NullPool)


class UiClient:
    """Sends requests the way MLflow's web UI does, with a recognisable user agent."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def request(
        self,
        method: str,
        endpoint: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        url = f"{self.base_url}/ajax-api/2.0/mlflow/{endpoint}"
        return self.session.request(method, url, json=body, params=params, timeout=60)

    def ok(
        self,
        method: str,
        endpoint: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        response = self.request(method, endpoint, body, params)
        assert response.status_code == 200, (method, endpoint, response.text)
        return response.json()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("ui", marks=pytest.mark.xdist_group("mlflow-ui-server")),
        pytest.param("server", marks=pytest.mark.xdist_group("mlflow-plain-server")),
    ],
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    kind: str = request.param
    workdir = tmp_path_factory.mktemp(f"mlflow-{kind}")
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    db_path = workdir / "mlflow.db"
    db = f"sqlite:///{db_path}"
    env = {
        "MLFLOW_TRACKING_USERNAME": SERVER_ENV_USER,
        "MLFLOW_GOVERNANCE_POLICY": str(policy),
        "MLFLOW_REGISTRY_URI": None,
        "MLFLOW_TRACKING_URI": None,
    }
    args = [
        "--backend-store-uri",
        db,
        "--registry-store-uri",
        f"governed+{db}",
        "--default-artifact-root",
        str(workdir / "artifacts"),
    ]
    with mlflow_server(args, workdir=workdir, command=kind, env=env) as running:
        yield Served(kind, running.url, db_path)


@pytest.fixture
def ui(served: Served) -> UiClient:
    return UiClient(served.url)


def _audit_rows(served: Served, model: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(audit_log).order_by(audit_log.c.id)
    if model is not None:
        query = query.where(audit_log.c.model == model)
    engine = served.engine()
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]
    finally:
        engine.dispose()


def _assert_anonymous_http_caller(rows: list[dict[str, Any]]) -> None:
    assert rows
    for row in rows:
        assert row["actor"] == "anonymous", row
        assert row["identity_source"] == "unauthenticated", row
        assert row["client_address"] == "127.0.0.1", row
        assert row["user_agent"] == USER_AGENT, row
        assert row["actor"] not in {getpass.getuser(), SERVER_ENV_USER}


def test_serves_mlflow_ui_page(served: Served, ui: UiClient) -> None:
    page = requests.get(f"{served.url}/", timeout=60)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<title>MLflow</title>" in page.text
    assert 'id="root"' in page.text
    # The models page of the UI lists registered models through this call.
    assert "registered_models" not in ui.ok(
        "GET", "registered-models/search", params={"filter": "name = 'ui-nothing-here'"}
    )


def test_ui_writes_are_audited_as_the_anonymous_http_caller(served: Served, ui: UiClient) -> None:
    name = f"ui-flow-{served.kind}"
    ui.ok(
        "POST",
        "registered-models/create",
        {"name": name, "tags": [{"key": "team", "value": "risk"}], "description": "d"},
    )
    ui.ok("PATCH", "registered-models/update", {"name": name, "description": "credit risk"})
    ui.ok("POST", "registered-models/set-tag", {"name": name, "key": "owner", "value": "risk"})
    ui.ok("DELETE", "registered-models/delete-tag", {"name": name, "key": "team"})
    run = ui.ok("POST", "runs/create", {"experiment_id": "0"})["run"]["info"]
    v1 = ui.ok(
        "POST",
        "model-versions/create",
        {
            "name": name,
            "source": f"runs:/{run['run_id']}/model",
            "run_id": run["run_id"],
        },
    )["model_version"]
    v2 = ui.ok("POST", "model-versions/create", {"name": name, "source": "s3://models/fraud/2"})[
        "model_version"
    ]
    assert (v1["version"], v2["version"]) == ("1", "2")
    # MLflow leaves user_id empty; the plugin stamps the actor it recorded.
    assert v1["user_id"] == v2["user_id"] == "anonymous"
    ui.ok("PATCH", "model-versions/update", {"name": name, "version": "1", "description": "b"})
    ui.ok(
        "POST",
        "model-versions/set-tag",
        {"name": name, "version": "1", "key": "validation_status", "value": "passed"},
    )
    ui.ok(
        "DELETE",
        "model-versions/delete-tag",
        {"name": name, "version": "1", "key": "validation_status"},
    )
    for stage in ("Staging", "Production"):
        ui.ok(
            "POST",
            "model-versions/transition-stage",
            {
                "name": name,
                "version": "1",
                "stage": stage,
                "archive_existing_versions": False,
            },
        )
    ui.ok("POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "1"})
    ui.ok("POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "2"})
    by_alias = ui.ok("GET", "registered-models/alias", params={"name": name, "alias": "champion"})
    assert by_alias["model_version"]["version"] == "2"
    ui.ok(
        "POST",
        "model-versions/transition-stage",
        {
            "name": name,
            "version": "2",
            "stage": "Production",
            "archive_existing_versions": True,
        },
    )
    ui.ok("DELETE", "registered-models/alias", {"name": name, "alias": "champion"})

    # What the UI's model page reads back.
    model = ui.ok("GET", "registered-models/get", params={"name": name})["registered_model"]
    assert model["description"] == "credit risk"
    assert {t["key"]: t["value"] for t in model["tags"]} == {"owner": "risk"}
    assert "aliases" not in model
    assert {v["version"]: v["current_stage"] for v in model["latest_versions"]} == {
        "1": "Archived",
        "2": "Production",
    }
    version = ui.ok("GET", "model-versions/get", params={"name": name, "version": "1"})
    assert version["model_version"]["description"] == "b"
    latest = ui.ok(
        "POST", "registered-models/get-latest-versions", {"name": name, "stages": ["Production"]}
    )
    assert [v["version"] for v in latest["model_versions"]] == ["2"]

    rows = _audit_rows(served, name)
    assert [(r["action"], r["version"]) for r in rows] == [
        ("create_registered_model", None),
        ("update_registered_model", None),
        ("set_registered_model_tag", None),
        ("delete_registered_model_tag", None),
        ("create_model_version", 1),
        ("create_model_version", 2),
        ("update_model_version", 1),
        ("set_model_version_tag", 1),
        ("delete_model_version_tag", 1),
        ("transition_model_version_stage", 1),
        ("transition_model_version_stage", 1),
        ("set_registered_model_alias", 1),
        ("set_registered_model_alias", 2),
        ("transition_model_version_stage", 2),
        ("transition_model_version_stage", 1),  # archived by archive_existing_versions
        ("delete_registered_model_alias", 2),
    ]
    stages = [
        (r["version"], r["stage_before"], r["stage_after"])
        for r in rows
        if r["action"] == "transition_model_version_stage"
    ]
    assert stages == [
        (1, "None", "Staging"),
        (1, "Staging", "Production"),
        (2, "None", "Production"),
        (1, "Production", "Archived"),
    ]
    aliases = [(r["alias"], r["alias_before"], r["alias_after"]) for r in rows if r["alias"]]
    assert aliases == [("champion", None, 1), ("champion", 1, 2), ("champion", 2, None)]
    assert {r["decision"] for r in rows} == {"allow"}
    assert {r["rule"] for r in rows} == {"bindings[0] (role maintainer)"}
    _assert_anonymous_http_caller(rows)
    engine = served.engine()
    try:
        with engine.connect() as conn:
            assert verify(conn).ok
    finally:
        engine.dispose()


def test_rename_and_deletes_are_audited(served: Served, ui: UiClient) -> None:
    old, new = f"ui-rename-{served.kind}", f"ui-renamed-{served.kind}"
    ui.ok("POST", "registered-models/create", {"name": old})
    ui.ok("POST", "model-versions/create", {"name": old, "source": "s3://models/r/1"})
    ui.ok("POST", "registered-models/rename", {"name": old, "new_name": new})
    ui.ok("DELETE", "model-versions/delete", {"name": new, "version": "1"})
    ui.ok("DELETE", "registered-models/delete", {"name": new})
    missing = ui.request("GET", "registered-models/get", params={"name": new})
    assert missing.status_code == 404

    before = _audit_rows(served, old)
    assert [r["action"] for r in before] == [
        "create_registered_model",
        "create_model_version",
        "rename_registered_model",
    ]
    assert '"new_name": "' + new + '"' in before[-1]["details"]
    after = _audit_rows(served, new)
    assert [r["action"] for r in after][:1] == ["delete_model_version"]
    assert "delete_registered_model" in [r["action"] for r in after]
    _assert_anonymous_http_caller(before + after)


@pytest.fixture(scope="module")
def bad_request_model(served: Served) -> str:
    name = f"ui-bad-{served.kind}"
    ui = UiClient(served.url)
    ui.ok("POST", "registered-models/create", {"name": name})
    ui.ok("POST", "model-versions/create", {"name": name, "source": "s3://models/bad/1"})
    return name


@pytest.mark.parametrize(
    ("method", "endpoint", "body", "status", "code"),
    [
        (
            "POST",
            "model-versions/transition-stage",
            {"version": "1", "stage": "Prod", "archive_existing_versions": False},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "registered-models/alias",
            {"alias": "latest", "version": "1"},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "registered-models/alias",
            {"alias": "v7", "version": "1"},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "model-versions/set-tag",
            {"version": "one", "key": "k", "value": "v"},
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "registered-models/alias",
            {"name": "ui-no-such-model", "alias": "champion", "version": "1"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            "POST",
            "model-versions/transition-stage",
            {"version": "9", "stage": "Staging", "archive_existing_versions": False},
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        ("POST", "registered-models/create", {"name": ""}, 400, "INVALID_PARAMETER_VALUE"),
    ],
    ids=[
        "invalid-stage",
        "reserved-alias",
        "version-like-alias",
        "non-numeric-version",
        "missing-model",
        "missing-version",
        "empty-name",
    ],
)
def test_bad_request_gets_mlflow_json_error_and_no_audit_row(
    served: Served,
    ui: UiClient,
    bad_request_model: str,
    method: str,
    endpoint: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    body = {"name": bad_request_model, **body}
    count = len(_audit_rows(served))
    response = ui.request(method, endpoint, body)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()
    assert error["error_code"] == code
    assert error["message"]
    assert "Traceback" not in error["message"]
    assert len(_audit_rows(served)) == count


def test_refusal_reaches_the_ui_as_403_and_is_audited(served: Served, ui: UiClient) -> None:
    name = f"locked-{served.kind}"
    response = ui.request("POST", "registered-models/create", {"name": name})
    assert response.status_code == 403, response.text
    error = response.json()
    assert error["error_code"] == "PERMISSION_DENIED"
    assert "anonymous" in error["message"] and "register" in error["message"]
    _assert_the_way_out_is_for_an_anonymous_caller(error["message"], name)
    engine = served.engine()
    try:
        with engine.connect() as conn:
            created = conn.execute(
                sa.text("SELECT COUNT(*) FROM registered_models WHERE name = :n"), {"n": name}
            ).scalar()
    finally:
        engine.dispose()
    assert created == 0
    rows = _audit_rows(served, name)
    assert [(r["action"], r["decision"], r["rule"]) for r in rows] == [
        ("create_registered_model", "deny", "default-deny"),
    ]
    _assert_anonymous_http_caller(rows)


def _assert_the_way_out_is_for_an_anonymous_caller(message: str, model: str) -> None:
    # Nobody can ask for a role on behalf of a caller nobody authenticated: the hint says
    # how to let anonymous callers in, or how to have people log in.
    assert "Ask for" not in message, message
    assert (
        f"bind user:anonymous to role maintainer on model '{model}' (roles granting" in message
    ), message
    assert "serve the registry with mlflow server --app-name governance" in message, message


def test_a_refused_read_tells_how_to_allow_anonymous_reads(served: Served, ui: UiClient) -> None:
    name = f"locked-read-{served.kind}"
    response = ui.request("GET", "registered-models/get", params={"name": name})
    assert response.status_code == 403, response.text
    error = response.json()
    assert error["error_code"] == "PERMISSION_DENIED"
    assert error["message"].startswith(f"Refused: anonymous may not read on model '{name}'")
    _assert_the_way_out_is_for_an_anonymous_caller(error["message"], name)
    assert [(r["action"], r["decision"]) for r in _audit_rows(served, name)] == [("read", "deny")]


def test_the_policy_names_the_anonymous_caller_as_the_store_does() -> None:
    from mlflow_governance.identity import ANONYMOUS
    from mlflow_governance.policy._scope import ANONYMOUS as POLICY_ANONYMOUS

    assert POLICY_ANONYMOUS == ANONYMOUS
