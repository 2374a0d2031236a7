"""Differential test: every CLI command gives the same JSON locally and over HTTP.

Two registries start alike. One is driven in local mode (the CLI opens its SQLite file and
asserts the user's name); the other through a real ``mlflow server --app-name governance``
with basic auth (the CLI holds only the server's URL and the user's credentials). The same
story of commands runs against both, and each answer must be equal once identity fields
(who the server says you are, how it knows) and ids are set aside; exit codes too.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mlflow_governance.cli import main
from tests.server.conftest import POLICIES, governance_server, password_of

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("transports")]

POLICY = str(POLICIES / "server.yaml")
MODEL = "transport-model"

#: Who the caller is and how that is known: these differ by design between the transports.
IDENTITY_FIELDS = frozenset({"identity_source", "server", "auth", "client_address", "user_agent"})
#: Row ids, hashes, times: equal only by accident.
ID_FIELDS = frozenset(
    {
        "id",
        "audit_id",
        "request_id",
        "head_id",
        "head_hash",
        "hash",
        "prev_hash",
        "time",
        "since",
        "created_at",
        "updated_at",
        "applied_at",
        "sha256",
        "broken_id",
        "expected_row",
    }
)
#: Environment a command must not inherit from the test process.
SCRUBBED = (
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_GOVERNANCE_POLICY",
)


def normalise(data: Any) -> Any:
    """``data`` without identity fields and ids (recursively)."""
    if isinstance(data, dict):
        kept = {
            key: normalise(value)
            for key, value in data.items()
            if key not in IDENTITY_FIELDS and key not in ID_FIELDS
        }
        return {key: value for key, value in kept.items() if value is not None}
    if isinstance(data, list):
        return [normalise(item) for item in data]
    # MLflow's REST client sends "" for a version's missing run id where the Python client
    # passes None: a difference of how the seed data was registered, not of our transports.
    return None if data == "" else data


@dataclass
class World:
    """One registry and how the CLI reaches it."""

    name: str
    env: dict[str, str | None]

    def run(self, user: str, *args: str) -> Result:
        env = {key: None for key in SCRUBBED}
        env.update(self.env)
        env["MLFLOW_TRACKING_USERNAME"] = user
        if self.name == "remote":
            env["MLFLOW_TRACKING_PASSWORD"] = password_of(user)
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _seed_local(db: str) -> None:
    from mlflow import MlflowClient

    values = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_GOVERNANCE_POLICY": POLICY}
    with _environ(values):
        client = MlflowClient(tracking_uri=db, registry_uri=f"governed+{db}")
        _seed(client)


def _seed(client: Any) -> None:
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(
            MODEL, f"s3://bucket/{MODEL}/model", tags={"validation_status": "passed"}
        )


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, World]]:
    local_dir = tmp_path_factory.mktemp("local-world")
    local_db = f"sqlite:///{local_dir / 'mlflow.db'}"
    _seed_local(local_db)
    local = World(
        "local",
        {"MLFLOW_REGISTRY_URI": f"governed+{local_db}", "MLFLOW_GOVERNANCE_POLICY": POLICY},
    )
    with governance_server(tmp_path_factory.mktemp("remote-world")) as gov:
        with gov.as_user("alice") as client:
            _seed(client)
        yield local, World("remote", {"MLFLOW_TRACKING_URI": gov.url})


def _story(tmp: Path) -> list[tuple[str, list[str]]]:
    """(user, arguments) of every command, in an order that makes a story."""
    checkpoint = str(tmp / "checkpoint-{world}.json")
    return [
        ("alice", ["whoami", "--json"]),
        ("oscar", ["policy", "show", "--json"]),
        ("oscar", ["policy", "validate", POLICY, "--json"]),
        ("oscar", ["policy", "explain", "--user", "carol", "--model", MODEL, "--json"]),
        ("mallory", ["policy", "apply", POLICY, "--json"]),  # refused: not policy:admin
        ("admin", ["policy", "apply", POLICY, "--json"]),
        ("carol", ["check", MODEL, "1", "--gate", "production", "--json"]),
        ("carol", ["check", MODEL, "1", "--gate", "nope", "--json"]),  # exit 2
        ("carol", ["promote", MODEL, "1", "--to", "Staging", "--json"]),
        ("carol", ["promote", MODEL, "1", "--to", "Production", "--json"]),  # exit 3
        ("carol", ["request", MODEL, "1", "--to", "Production", "-m", "again", "--json"]),
        ("oscar", ["requests", "--model", MODEL, "--json"]),
        ("oscar", ["requests", "--state", "pending", "--json"]),
        ("oscar", ["approve", "1", "--json"]),  # refused: not an approver
        ("dave", ["approve", "1", "-m", "looks good", "--json"]),
        ("erin", ["approve", "1", "--json"]),  # the last approval applies it
        ("mallory", ["requests", "--json"]),  # sees nothing
        ("carol", ["promote", MODEL, "2", "--to", "Staging", "--json"]),
        ("carol", ["request", MODEL, "2", "--to", "@champion", "--json"]),
        ("carol", ["cancel", "2", "-m", "wrong alias", "--json"]),
        ("carol", ["request", MODEL, "2", "--to", "Production", "--json"]),
        ("dave", ["reject", "3", "-m", "not yet", "--json"]),
        ("carol", ["promote", MODEL, "2", "--to", "Production", "--wait", "--timeout", "0"]),
        ("dave", ["approve", "4", "--json"]),
        ("erin", ["approve", "4", "--json"]),
        ("carol", ["rollback", MODEL, "--stage", "Production", "--json"]),  # exit 3
        ("dave", ["history", MODEL, "--json"]),
        ("dave", ["history", MODEL, "--at", "2000-01-01", "--json"]),
        ("dave", ["audit", "list", "--model", MODEL, "--json"]),
        ("dave", ["audit", "list", "--decision", "deny", "--newest-first", "--json"]),
        ("dave", ["audit", "export", "--model", MODEL, "--format", "jsonl", "--to", "-"]),
        ("dave", ["audit", "export", "--format", "csv", "--to", "-"]),
        ("oscar", ["audit", "verify", "--json"]),  # refused: no audit:read
        ("admin", ["audit", "checkpoint", "--to", checkpoint, "--json"]),
        ("admin", ["audit", "verify", "--checkpoint", checkpoint, "--json"]),
        ("oscar", ["audit", "reconcile", "--json"]),  # refused: no audit:read
        ("admin", ["audit", "reconcile", "--json"]),
        ("admin", ["db", "upgrade", "--json"]),  # local only: exit 2 remotely
    ]


def _parsed(result: Result) -> Any:
    text = result.stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # JSON Lines, CSV: compare line by line, JSON lines parsed.
        lines = []
        for line in text.splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append(line)
        return lines


def _csv_without_ids(lines: list[Any]) -> list[Any]:
    import csv

    rows = list(csv.DictReader([line for line in lines if isinstance(line, str)]))
    return [normalise({**row, "details": json.loads(row["details"])}) for row in rows]


def test_every_command_answers_alike_locally_and_over_http(
    worlds: tuple[World, World], tmp_path: Path
) -> None:
    local, remote = worlds
    compared = 0
    for user, args in _story(tmp_path):
        answers = {}
        for world in (local, remote):
            concrete = [a.replace("{world}", world.name) for a in args]
            result = world.run(user, *concrete)
            assert "Traceback" not in result.output, (world.name, args, result.output)
            answers[world.name] = result
        here, there = answers["local"], answers["remote"]
        if args[:2] == ["db", "upgrade"]:
            assert here.exit_code == 0 and there.exit_code == 2, (here.output, there.output)
            assert "works on the database itself" in there.stderr
            continue
        assert here.exit_code == there.exit_code, (args, here.output, there.output)
        if here.exit_code not in (0, 3):
            # Refusals and errors: the same message, up to the identity and ids in it.
            # (promote --wait prints its progress first).
            assert "Error: " in here.stderr and "Error: " in there.stderr, args
            assert _scrub(here.stderr) == _scrub(there.stderr), args
            compared += 1
            continue
        left, right = _parsed(here), _parsed(there)
        if args[:3] == ["audit", "export", "--format"] and "csv" in args:
            left, right = _csv_without_ids(left), _csv_without_ids(right)
        assert normalise(left) == normalise(right), (args, _differences(left, right))
        compared += 1
    assert compared == len(_story(tmp_path)) - 1


def _differences(left: Any, right: Any, path: str = "") -> list[str]:
    """Where two normalised answers differ, for the failure message."""
    left, right = normalise(left), normalise(right)
    if isinstance(left, dict) and isinstance(right, dict):
        out = []
        for key in sorted(set(left) | set(right)):
            out += _differences(left.get(key), right.get(key), f"{path}.{key}")
        return out
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        out = []
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            out += _differences(a, b, f"{path}[{i}]")
        return out
    return [] if left == right else [f"{path}: {left!r} != {right!r}"]


def _scrub(text: str) -> str:
    import re

    return re.sub(r"#\d+|\(\d+s\)|\b\d{4}-\d\d-\d\dT[\d:.]+Z?", "#", text)


def test_the_remote_audit_rows_say_server(worlds: tuple[World, World]) -> None:
    _, remote = worlds
    result = remote.run("dave", "audit", "list", "--actor", "carol", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows and {row["identity_source"] for row in rows} == {"server"}
    mine = remote.run("carol", "whoami", "--json")
    data = json.loads(mine.stdout)
    assert (data["user"], data["identity_source"]) == ("carol", "server")
    assert data["server"].startswith("http://127.0.0.1:")


def test_governance_client_speaks_to_the_server(worlds: tuple[World, World]) -> None:
    """``GovernanceClient`` in remote mode: the same answers, errors as MlflowException."""
    from mlflow.exceptions import MlflowException

    from mlflow_governance.client import GovernanceClient
    from mlflow_governance.identity import SOURCE_ASSERTED, Identity

    local, remote = worlds
    server = str(remote.env["MLFLOW_TRACKING_URI"])
    with _environ(
        {"MLFLOW_TRACKING_USERNAME": "dave", "MLFLOW_TRACKING_PASSWORD": password_of("dave")}
    ):
        client = GovernanceClient(tracking_uri=server)
        assert client.remote
        assert client.whoami()["identity_source"] == "server"
        over_http = client.history(MODEL)
        with pytest.raises(MlflowException) as refused:
            client.apply_policy(POLICY)  # dave is no policy admin
        assert refused.value.error_code == "PERMISSION_DENIED"
        with pytest.raises(MlflowException) as bad:
            client.check(MODEL, 1, "nope")
        assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    with _environ({"MLFLOW_GOVERNANCE_POLICY": POLICY}):
        here = GovernanceClient(
            str(local.env["MLFLOW_REGISTRY_URI"]), identity=Identity("dave", SOURCE_ASSERTED)
        )
        assert not here.remote
        assert normalise(here.history(MODEL)) == normalise(over_http)
    with pytest.raises(MlflowException, match="decides who the caller is"):
        GovernanceClient(server, identity=Identity("dave", SOURCE_ASSERTED))


def test_governance_client_events_and_manifests_over_http(worlds: tuple[World, World]) -> None:
    from mlflow.exceptions import MlflowException

    from mlflow_governance.client import GovernanceClient

    _, remote = worlds
    server = str(remote.env["MLFLOW_TRACKING_URI"])
    with _environ(
        {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password_of("admin")}
    ):
        client = GovernanceClient(tracking_uri=server)
        events = client.events(limit=1000)
        assert "model_version.registered" in {e["type"] for e in events}
        assert client.retry_events(dead=True) == {"retried": 0}
        with pytest.raises(MlflowException) as nowhere:  # nothing holds Archived's release
            client.render_manifests(MODEL, stage="Archived")
        assert nowhere.value.error_code == "INVALID_PARAMETER_VALUE"
    with _environ(
        {"MLFLOW_TRACKING_USERNAME": "oscar", "MLFLOW_TRACKING_PASSWORD": password_of("oscar")}
    ):
        with pytest.raises(MlflowException) as refused:
            GovernanceClient(tracking_uri=server).events()
        assert refused.value.error_code == "PERMISSION_DENIED"
