"""Real governance servers for the server tests: ``mlflow server --app-name governance``.

:func:`governance_server` starts one on 127.0.0.1 with a policy from ``policies/``, a
basic-auth configuration of its own (its users' database beside the registry, or on
PostgreSQL) and the users of :data:`USERS`, created through basic-auth's REST route as its
admin. Tests drive it with the stock ``MlflowClient`` (per-user credentials through
``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, see :meth:`GovServer.as_user`) and with
``requests`` for the governance API.

Servers are expensive on a shared two-core machine, so one SQLite server in basic mode
serves every module of the ``governance-sqlite`` xdist group (session scope, one worker);
each test uses models of its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.databases import REQUIRE, SERVERS
from tests.servers import RunningServer, mlflow_server

POLICIES = Path(__file__).parent / "policies"
API = "/api/2.0/mlflow-governance"
ADMIN = "admin"

#: Basic-auth users the tests create, and the policy groups they belong to (see
#: ``policies/server.yaml``): alice registers, carol stages, dave and erin approve,
#: oscar only reads, mallory has no binding at all.
USERS = ("alice", "carol", "dave", "erin", "oscar", "mallory")


def password_of(user: str) -> str:
    """Every test user's password (long enough for basic-auth's password policy)."""
    return f"{user}-Passw0rd-{user[::-1]}"


@dataclass
class GovServer:
    """A running governance server and how to talk to it as each user."""

    server: RunningServer
    workdir: Path
    registry_db: str
    auth_db: str
    auth_mode: str = "basic"
    sessions: dict[str, requests.Session] = field(default_factory=dict)
    _spec: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:50123``."""
        return self.server.url

    def session(self, user: str | None) -> requests.Session:
        """A ``requests`` session sending ``user``'s basic-auth credentials (None: none)."""
        key = user or ""
        if key not in self.sessions:
            sess = requests.Session()
            if user is not None:
                sess.auth = (user, password_of(user))
            sess.headers["User-Agent"] = "governance-tests/1.0"
            self.sessions[key] = sess
        return self.sessions[key]

    def api(
        self,
        user: str | None,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Call ``API + path`` as ``user``."""
        return self.session(user).request(
            method,
            f"{self.url}{API}{path}",
            json=json,
            params=params,
            headers=dict(headers or {}),
            timeout=120,
        )

    def spec(self) -> dict[str, Any]:
        """The server's ``openapi.json``, checked with openapi-spec-validator once."""
        if self._spec is None:
            from openapi_spec_validator import validate

            response = self.api(
                ADMIN if self.auth_mode == "basic" else None, "GET", "/openapi.json"
            )
            assert response.status_code == 200, response.text
            spec = response.json()
            validate(spec)
            self._spec = spec
        return self._spec

    def call(
        self,
        user: str | None,
        method: str,
        template: str,
        *,
        expect: int = 200,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **path_params: Any,
    ) -> Any:
        """Call a governance route and check the answer against ``openapi.json``.

        Args:
            user: Who calls (None: no credentials).
            method: HTTP method.
            template: The route as the spec names it, e.g. ``/requests/{request_id}``.
            expect: The HTTP status the test expects.
            json: Request body.
            params: Query parameters.
            headers: Extra headers.
            **path_params: Values for the template's placeholders.

        Returns:
            The parsed JSON body, valid against the response schema the spec declares for
            this route, method and status.
        """
        response = self.api(
            user, method, template.format(**path_params), json=json, params=params, headers=headers
        )
        assert response.status_code == expect, (response.status_code, response.text)
        body = response.json()
        check_against_spec(self.spec(), method, f"{API}{template}", response.status_code, body)
        return body

    def rest(self, user: str | None, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call one of MLflow's own REST routes, e.g. ``/api/2.0/mlflow/...``."""
        return self.session(user).request(method, f"{self.url}{path}", timeout=120, **kwargs)

    @contextlib.contextmanager
    def as_user(self, user: str) -> Iterator[Any]:
        """A stock ``MlflowClient`` for this server, authenticating as ``user``.

        MLflow reads the credentials from the environment at every request, so they are
        set for the block and restored afterwards.
        """
        from mlflow import MlflowClient

        saved = {
            k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        }
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password_of(user)
        try:
            yield MlflowClient(tracking_uri=self.url, registry_uri=self.url)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def create_users(self, users: Sequence[str] = USERS) -> None:
        """Create basic-auth users through its user-creation route, as its admin."""
        for user in users:
            response = self.rest(
                ADMIN,
                "POST",
                "/api/2.0/mlflow/users/create",
                json={"username": user, "password": password_of(user)},
            )
            assert response.status_code == 200 or "already exists" in response.text, (
                response.status_code,
                response.text,
            )


def check_against_spec(
    spec: dict[str, Any], method: str, path: str, status: int, body: Any
) -> None:
    """Validate ``body`` against the spec's schema for this route and status."""
    import jsonschema

    operation = spec["paths"][path][method.lower()]
    declared = operation["responses"].get(str(status))
    assert declared is not None, f"{method} {path} does not declare status {status}"
    schema = declared["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(
        {**schema, "components": spec["components"]},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    ).validate(body)


def write_auth_config(workdir: Path, database_uri: str) -> Path:
    """A basic-auth configuration of the server's own (users database, admin name).

    The credential cache keeps basic-auth's deliberately slow password hashing to once per
    user and worker, which the tests (and any busy deployment) need on a small machine.
    """
    path = workdir / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 300\n",
        encoding="utf-8",
    )
    return path


def server_env(
    workdir: Path,
    *,
    auth_db: str,
    policy: str = "server.yaml",
    secret: str | None = None,
    extra: Mapping[str, str | None] | None = None,
) -> dict[str, str | None]:
    """The environment of a governance server started by the tests."""
    env: dict[str, str | None] = {
        "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(workdir, auth_db)),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password_of(ADMIN),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret or secrets.token_hex(16),
        "MLFLOW_GOVERNANCE_POLICY": str(POLICIES / policy),
        "MLFLOW_GOVERNANCE_POLICY_REFRESH": "1",
        "MLFLOW_GOVERNANCE_AUTH": None,
        "MLFLOW_GOVERNANCE_TRUSTED_PROXIES": None,
        "MLFLOW_TRACKING_USERNAME": None,
        "MLFLOW_TRACKING_PASSWORD": None,
    }
    env.update(extra or {})
    return env


@contextlib.contextmanager
def governance_server(
    workdir: Path,
    *,
    registry_db: str | None = None,
    auth_db: str | None = None,
    policy: str = "server.yaml",
    workers: int = 1,
    secret: str | None = None,
    extra_env: Mapping[str, str | None] | None = None,
    extra_args: Sequence[str] = (),
    create_users: bool = True,
) -> Iterator[GovServer]:
    """Run ``mlflow server --app-name governance`` for the block.

    Args:
        workdir: The server's directory (SQLite files, logs, artifacts).
        registry_db: Plain SQLAlchemy URL of the tracking and registry database
            (default: SQLite in ``workdir``).
        auth_db: Basic-auth's users database (default: SQLite in ``workdir``).
        policy: A file in ``policies/``.
        workers: Uvicorn workers.
        secret: The Flask secret key (servers sharing users must share it).
        extra_env: More environment (e.g. the trusted-header settings).
        extra_args: More ``mlflow server`` arguments.
        create_users: Create :data:`USERS` (basic mode only).
    """
    registry_db = registry_db or f"sqlite:///{workdir / 'mlflow.db'}"
    auth_db = auth_db or f"sqlite:///{workdir / 'auth.db'}"
    env = server_env(workdir, auth_db=auth_db, policy=policy, secret=secret, extra=extra_env)
    args = [
        "--app-name",
        "governance",
        "--backend-store-uri",
        registry_db,
        "--registry-store-uri",
        f"governed+{registry_db}",
        "--artifacts-destination",
        str(workdir / "artifacts"),
        *extra_args,
    ]
    with mlflow_server(args, workdir=workdir, env=env, workers=workers) as running:
        gov = GovServer(
            running,
            workdir,
            registry_db,
            auth_db,
            (extra_env or {}).get("MLFLOW_GOVERNANCE_AUTH") or "basic",
        )
        if create_users and gov.auth_mode == "basic":
            gov.create_users()
        try:
            yield gov
        finally:
            for sess in gov.sessions.values():
                sess.close()


def postgres_or_skip() -> None:
    """Skip (or fail under ``MLFLOW_GOVERNANCE_REQUIRE_DATABASES=1``) without PostgreSQL."""
    database_or_skip("postgresql")


def database_or_skip(backend: str) -> None:
    """Skip (or fail under ``MLFLOW_GOVERNANCE_REQUIRE_DATABASES=1``) without ``backend``.

    Args:
        backend: ``postgresql`` or ``mysql`` (a key of ``tests.databases.SERVERS``).
    """
    problem = SERVERS[backend].reachable()
    if problem:
        if REQUIRE:
            pytest.fail(f"{problem} (MLFLOW_GOVERNANCE_REQUIRE_DATABASES=1)")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovServer]:
    """One basic-auth governance server on SQLite, shared by the ``governance-sqlite`` group."""
    workdir = tmp_path_factory.mktemp("governance-sqlite")
    with governance_server(workdir) as gov:
        yield gov


def register(
    gov: GovServer,
    owner: str,
    name: str,
    *,
    tags: Mapping[str, str] | None = None,
    stage: str | None = "Staging",
) -> int:
    """Create ``name`` and a version through the stock client; optionally stage it as carol.

    Returns:
        The version number.
    """
    with gov.as_user(owner) as client:
        with contextlib.suppress(Exception):
            client.create_registered_model(name)
        mv = client.create_model_version(
            name, f"s3://bucket/{name}/model", tags=dict(tags or {"validation_status": "passed"})
        )
    version = int(mv.version)
    if stage:
        with gov.as_user("carol") as client:
            client.transition_model_version_stage(name, version, stage)
    return version


def approve_when_waiting(
    gov: GovServer, process: subprocess.Popen[str], approvers: Sequence[str] = ("dave", "erin")
) -> str:
    """Read a ``promote --wait`` step's stderr until it names its request, approve it.

    Returns:
        Everything the step wrote to standard error.
    """
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("Waiting for request #"):
            request_id = int(line.split("#", 1)[1].split(" ", 1)[0])
            for approver in approvers:
                gov.call(
                    approver,
                    "POST",
                    "/requests/{request_id}/approve",
                    json={},
                    request_id=request_id,
                )
            break
    return "".join(seen) + process.stderr.read()
