"""docs/deployment.md's two replicas, run as written, on one real database.

The doc's ``two-replicas/start`` block is run by ``bash`` in a scratch directory, with a
fresh database in place of its ``DATABASE_URL``. Its ``mlflow server … &`` lines call a
shell function instead of MLflow, which records their arguments and environment; each
recorded server is then started by :func:`tests.servers.mlflow_server` (health wait,
clean stop by process group) with a free port in place of the doc's. The doc's
``two-replicas/users`` block is run next, against those ports. Whatever the doc says is
what runs: edit a command there and this test runs the edited one.

Then the story: versions registered through replica A are read through replica B; a
promotion request opened on A is approved on B (two approvers, as the team policy
requires) and applied; A sees the version in Production; the audit log holds rows written
through both replicas (told apart by the User-Agent each client sends) and ``audit
verify`` finds one intact chain.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.databases import SERVERS
from tests.server.conftest import database_or_skip
from tests.servers import RunningServer, mlflow_server

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deployment.md"
POLICY = ROOT / "examples" / "policies" / "team.yaml"
VENV_BIN = Path(sys.executable).parent
API = "/api/2.0/mlflow-governance"
#: The ports the doc's example uses, replaced by free ones here.
DOC_PORTS = ("5001", "5002")
#: The users the doc's users block creates, and their password pattern there.
USERS = ("alice", "carol", "dave", "erin")
ADMIN = "admin"
MODEL = "replicated-fraud"
TIMEOUT = 120

#: Stands in for ``mlflow`` in the doc's start block: records what would have run.
RECORDER = r"""
mlflow() {
  local record
  record="$(mktemp -d "$RECORD/server-XXXXXX")"
  printf '%s\0' "$@" > "$record/args"
  env -0 > "$record/env"
}
"""


def password_of(user: str) -> str:
    """The password the doc's users block gives ``user`` (the admin's comes from its env)."""
    return f"{user}-password-change-me"


def doc_block(name: str) -> str:
    """The fenced ``bash`` block the doc marks ``<!-- tested: NAME -->``."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- tested: {re.escape(name)} -->\n```bash\n(.*?)\n```", text, re.S)
    assert found, f"{DOC.name} has no bash block marked 'tested: {name}'"
    return found.group(1)


def bash(script: str, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``script`` under ``bash -euo pipefail``; fail with its output if it fails."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def clean_env() -> dict[str, str]:
    """This process's environment without any MLflow setting, the venv first on PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class Launch:
    """One ``mlflow server`` line of the doc, as bash expanded it."""

    args: list[str]
    env: dict[str, str]
    port: str


def _read_launch(record: Path) -> Launch:
    argv = (record / "args").read_bytes().decode().split("\0")[:-1]
    env_items = (record / "env").read_bytes().decode().split("\0")[:-1]
    env = dict(item.split("=", 1) for item in env_items)
    env.pop("RECORD", None)
    assert argv[0] == "server", argv
    args, options = [], {}
    rest = iter(argv[1:])
    for arg in rest:
        if arg in ("--host", "--port"):
            options[arg] = next(rest)
        else:
            args.append(arg)
    assert options.get("--host") == "127.0.0.1", f"the doc's replicas bind 127.0.0.1: {argv}"
    return Launch(args, env, options["--port"])


def _set_variable(block: str, name: str, value: str) -> str:
    line = re.search(rf"^export {name}=\S+", block, re.M)
    assert line, f"the start block sets {name} on a line of its own"
    return block.replace(line.group(0), f"export {name}={shlex.quote(value)}", 1)


def run_start_block(workdir: Path, database_url: str, auth_url: str | None) -> list[Launch]:
    """Run the doc's start block on ``database_url``; the servers it would start.

    Args:
        workdir: Where the block runs (its ``$PWD``).
        database_url: Replaces the doc's ``DATABASE_URL``.
        auth_url: Replaces the doc's ``AUTH_DATABASE_URL`` (None: keep the doc's, which
            is ``DATABASE_URL`` itself).
    """
    block = _set_variable(doc_block("two-replicas/start"), "DATABASE_URL", database_url)
    if auth_url is not None:
        block = _set_variable(block, "AUTH_DATABASE_URL", auth_url)
    shutil.copy(POLICY, workdir / "policy.yaml")
    records = workdir / "records"
    records.mkdir()
    env = {**clean_env(), "RECORD": str(records)}
    bash(f"{RECORDER}\n{block}\nwait\n", cwd=workdir, env=env)
    launches = sorted(
        (_read_launch(path) for path in records.iterdir()),
        key=lambda launch: launch.port,
    )
    assert [launch.port for launch in launches] == list(DOC_PORTS)
    return launches


@contextlib.contextmanager
def start(launch: Launch, workdir: Path) -> Iterator[RunningServer]:
    """Start one recorded server, in the doc's environment and nothing else."""
    env: dict[str, str | None] = {key: None for key in os.environ if key not in launch.env}
    env.update(launch.env)
    # workers=0: the doc's own --workers stays the only one. Each log is named by port.
    with mlflow_server(launch.args, workdir=workdir, env=env, workers=0) as running:
        yield running


@dataclass
class Replica:
    """A running replica, and a requests session per user that names the replica."""

    label: str
    server: RunningServer
    admin_password: str
    sessions: dict[str, requests.Session] = field(default_factory=dict)

    @property
    def user_agent(self) -> str:
        return f"two-replicas-test/{self.label}"

    def as_user(self, user: str) -> requests.Session:
        if user not in self.sessions:
            sess = requests.Session()
            sess.auth = (user, self.admin_password if user == ADMIN else password_of(user))
            sess.headers["User-Agent"] = self.user_agent
            self.sessions[user] = sess
        return self.sessions[user]

    def call(self, user: str, method: str, path: str, expect: int = 200, **kwargs: object) -> dict:
        response = self.as_user(user).request(
            method, f"{self.server.url}{path}", timeout=TIMEOUT, **kwargs
        )
        assert response.status_code == expect, (self.label, path, response.text)
        return dict(response.json())


@contextlib.contextmanager
def replicas(
    workdir: Path, database_url: str, auth_url: str | None
) -> Iterator[tuple[Replica, Replica]]:
    """The doc's two replicas on ``database_url``, with its users created."""
    launches = run_start_block(workdir, database_url, auth_url)
    admin_password = launches[0].env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    with start(launches[0], workdir) as a, start(launches[1], workdir) as b:
        users = doc_block("two-replicas/users")
        for doc_port, server in zip(DOC_PORTS, (a, b), strict=True):
            assert f"127.0.0.1:{doc_port}" in users
            users = users.replace(f"127.0.0.1:{doc_port}", f"127.0.0.1:{server.port}")
        done = bash(users, cwd=workdir, env=launches[0].env)
        assert "alice (identity source: server)" in done.stdout, done.stdout
        pair = (Replica("A", a, admin_password), Replica("B", b, admin_password))
        try:
            yield pair
        finally:
            for replica in pair:
                for sess in replica.sessions.values():
                    sess.close()


def story(a: Replica, b: Replica, database_url: str, workdir: Path) -> None:
    """Register on A, read on B, request on A, approve on B, check the log of both."""
    registry = "/api/2.0/mlflow"
    a.call("alice", "POST", f"{registry}/registered-models/create", json={"name": MODEL})
    tags = [{"key": "validation_status", "value": "passed"}]
    versions = [
        a.call(
            "alice",
            "POST",
            f"{registry}/model-versions/create",
            json={"name": MODEL, "source": f"s3://bucket/{MODEL}", "tags": tags},
        )["model_version"]["version"]
        for _ in range(2)
    ]
    assert versions == ["1", "2"]

    for version in versions:  # B sees what A wrote, at once
        seen = b.call(
            "carol",
            "GET",
            f"{registry}/model-versions/get",
            params={"name": MODEL, "version": version},
        )
        assert seen["model_version"]["user_id"] == "alice"

    a.call(
        "carol",
        "POST",
        f"{registry}/model-versions/transition-stage",
        json={
            "name": MODEL,
            "version": "1",
            "stage": "Staging",
            "archive_existing_versions": False,
        },
    )
    opened = a.call(
        "carol",
        "POST",
        f"{API}/requests",
        expect=201,
        json={"model": MODEL, "version": 1, "target": "Production", "comment": "via A"},
    )
    assert opened["state"] == "pending"
    request_id = opened["id"]

    first = b.call("dave", "POST", f"{API}/requests/{request_id}/approve", json={"comment": "B"})
    assert first["state"] == "pending"
    second = b.call("erin", "POST", f"{API}/requests/{request_id}/approve", json={})
    assert second["state"] == "applied"

    stage = a.call(
        "alice", "GET", f"{registry}/model-versions/get", params={"name": MODEL, "version": "1"}
    )["model_version"]["current_stage"]
    assert stage == "Production"
    assert a.call("carol", "GET", f"{API}/requests/{request_id}")["state"] == "applied"

    rows = b.as_user(ADMIN).get(
        f"{b.server.url}{API}/audit", params={"model": MODEL, "limit": 100}, timeout=TIMEOUT
    )
    assert rows.status_code == 200, rows.text
    made = {(r["user_agent"], r["actor"], r["action"], r["decision"]) for r in rows.json()}
    assert (a.user_agent, "alice", "create_model_version", "allow") in made
    assert (a.user_agent, "carol", "transition_model_version_stage", "allow") in made
    assert any(ua == b.user_agent and actor == "erin" for ua, actor, _, _ in made), made
    assert {r["identity_source"] for r in rows.json()} == {"server"}

    # One chain, whichever replica wrote each row: through the server, and on the database.
    remote = verify(workdir, {"MLFLOW_TRACKING_URI": a.server.url, **admin_env(a)})
    local = verify(workdir, {"MLFLOW_REGISTRY_URI": f"governed+{database_url}"})
    assert remote["ok"] and local["ok"], (remote, local)
    assert remote["rows"] == local["rows"] >= len(rows.json())
    assert remote["head_hash"] == local["head_hash"]


def admin_env(replica: Replica) -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": replica.admin_password}


def verify(workdir: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [str(VENV_BIN / "mlflow-governance"), "audit", "verify", "--json"],
        cwd=workdir,
        env={**clean_env(), "MLFLOW_TRACKING_USERNAME": ADMIN, **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_two_replicas_of_the_deployment_doc_share_one_database(
    backend: str, tmp_path: Path
) -> None:
    database_or_skip(backend)
    # MLflow's basic-auth cannot create its tables on MySQL/MariaDB (two foreign keys
    # named fk_user_id); the doc keeps the users in a SQLite file there, as here.
    auth_url = f"sqlite:///{tmp_path / 'auth.db'}" if backend == "mysql" else None
    with (
        SERVERS[backend].database("replicas") as database_url,
        replicas(tmp_path, database_url, auth_url) as (a, b),
    ):
        story(a, b, database_url, tmp_path)


def test_the_doc_example_is_what_this_test_runs() -> None:
    """Cheap guard, no servers: the blocks exist, the replicas differ only by port."""
    start_block = doc_block("two-replicas/start")
    servers = [
        shlex.split(command.replace("\\\n", " ").rstrip("&"))
        for command in re.findall(r"^mlflow server .*?&$", start_block, re.M | re.S)
    ]
    assert len(servers) == 2
    ports = [argv[argv.index("--port") + 1] for argv in servers]
    assert ports == list(DOC_PORTS)
    without_port = [[arg for arg in argv if arg not in DOC_PORTS] for argv in servers]
    assert without_port[0] == without_port[1]
    assert "mlflow-governance db upgrade" in start_block.split("mlflow server")[0]
    users = doc_block("two-replicas/users")
    for user in USERS:
        assert user in users
    assert "$user-password-change-me" in users
