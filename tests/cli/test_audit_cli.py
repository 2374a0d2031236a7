"""The ``audit``, ``history``, ``whoami`` and ``db upgrade`` commands, through click's runner.

Each test tells the same short story in a real registry (alice registers, bob promotes,
carol replaces the champion, mallory is refused) and reads it back through the CLI. The
times used for ``--since``, ``--until`` and ``--at`` are taken from the audit rows.
"""

from __future__ import annotations

import csv
import getpass
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from mlflow.entities.model_registry import RegisteredModelTag
from mlflow.exceptions import MlflowException

from mlflow_governance import db as schema
from mlflow_governance.audit.chain import verify_rows
from mlflow_governance.audit.query import COLUMNS
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.cli import main
from mlflow_governance.entry import build_store
from tests.tamper import tamper

SPEC_ROW_FIELDS = {
    "id",
    "time",
    "actor",
    "identity_source",
    "action",
    "model",
    "version",
    "decision",
    "reason",
    "hash",
}

POLICY = """\
version: 1
mode: enforce
roles:
  maintainer: ["*"]
bindings:
  - role: maintainer
    principals: ["user:alice", "user:bob", "user:carol"]
"""


def cli(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """Run the CLI; unexpected exceptions propagate with their traceback."""
    return CliRunner().invoke(main, list(args), env=dict(env or {}), catch_exceptions=False)


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@dataclass(frozen=True)
class Story:
    """A registry with a known audit trail."""

    uri: str

    def rows(self) -> list[dict[str, Any]]:
        return cli_json("audit", "list", "--registry-uri", self.uri, "--limit", "1000")

    def time_of(self, row_id: int) -> str:
        return next(r["time"] for r in self.rows() if r["id"] == row_id)


def tell_story(
    registry_uri: str,
    as_user: Callable[[str], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Story:
    """Rows: 1-3 alice registers fraud v1, v2; 4-6 bob stages, promotes and crowns v1;
    7-9 carol promotes v2 (v1 archived as a side effect) and moves the champion;
    10 bob registers churn; 11 mallory's tag on fraud is refused."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", str(policy))
    store = build_store(registry_uri)
    as_user("alice")
    store.create_registered_model("fraud")
    store.create_model_version("fraud", "s3://models/fraud/1")
    store.create_model_version("fraud", "s3://models/fraud/2")
    as_user("bob")
    store.transition_model_version_stage("fraud", 1, "Staging", False)
    store.transition_model_version_stage("fraud", 1, "Production", False)
    store.set_registered_model_alias("fraud", "champion", 1)
    as_user("carol")
    store.transition_model_version_stage("fraud", 2, "Production", True)
    store.set_registered_model_alias("fraud", "champion", 2)
    as_user("bob")
    store.create_registered_model("churn")
    as_user("mallory")
    with pytest.raises(MlflowException) as refused:
        store.set_registered_model_tag("fraud", RegisteredModelTag("owner", "mallory"))
    assert refused.value.error_code == "PERMISSION_DENIED"
    as_user("alice")
    return Story(registry_uri)


@pytest.fixture
def story(
    sqlite_registry_uri: str,
    as_user: Callable[[str], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Story:
    """The story on SQLite."""
    return tell_story(sqlite_registry_uri, as_user, tmp_path, monkeypatch)


@pytest.fixture
def backend_story(
    registry_uri: str,
    as_user: Callable[[str], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Story:
    """The story on each backend (SQLite, PostgreSQL, MariaDB)."""
    return tell_story(registry_uri, as_user, tmp_path, monkeypatch)


EXPECTED = [
    (1, "alice", "create_registered_model", "fraud", None, "allow"),
    (2, "alice", "create_model_version", "fraud", 1, "allow"),
    (3, "alice", "create_model_version", "fraud", 2, "allow"),
    (4, "bob", "transition_model_version_stage", "fraud", 1, "allow"),
    (5, "bob", "transition_model_version_stage", "fraud", 1, "allow"),
    (6, "bob", "set_registered_model_alias", "fraud", 1, "allow"),
    (7, "carol", "transition_model_version_stage", "fraud", 2, "allow"),
    (8, "carol", "transition_model_version_stage", "fraud", 1, "allow"),
    (9, "carol", "set_registered_model_alias", "fraud", 2, "allow"),
    (10, "bob", "create_registered_model", "churn", None, "allow"),
    (11, "mallory", "set_registered_model_tag", "fraud", None, "deny"),
]


def _summary(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["id"], r["actor"], r["action"], r["model"], r["version"], r["decision"]) for r in rows
    ]


# ---------------------------------------------------------------------- audit list


def test_list_json_has_every_row_with_the_spec_fields(story: Story) -> None:
    rows = story.rows()
    assert _summary(rows) == EXPECTED
    for row in rows:
        assert row.keys() >= SPEC_ROW_FIELDS
        assert set(COLUMNS) <= row.keys()
        assert row["identity_source"] == "asserted"
        assert row["time"].endswith("Z") and len(row["hash"]) == 64
    assert rows[6]["stage_before"] == "None" and rows[6]["stage_after"] == "Production"
    assert rows[7]["details"] == {"side_effect": True}
    assert "mallory" in rows[10]["reason"] or rows[10]["rule"] == "default-deny"


def test_list_table(story: Story) -> None:
    result = cli("audit", "list", "--registry-uri", story.uri)
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.strip().splitlines()
    assert header.split() == [
        "ID",
        "TIME",
        "ACTOR",
        "ACTION",
        "MODEL",
        "VERSION",
        "DECISION",
        "REASON",
    ]
    assert len(lines) == len(EXPECTED)
    for line, (row_id, actor, action, model, _version, decision) in zip(
        lines, EXPECTED, strict=True
    ):
        cells = line.split()
        assert cells[:5] == [str(row_id), cells[1], actor, action, model]
        assert decision in cells


def test_list_of_an_empty_log_says_so(sqlite_registry_uri: str) -> None:
    result = cli("audit", "list", "--registry-uri", sqlite_registry_uri)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "(no rows)"
    assert cli_json("audit", "list", "--registry-uri", sqlite_registry_uri) == []


@pytest.mark.parametrize(
    ("options", "ids"),
    [
        (["--model", "churn"], [10]),
        (["--version", "1"], [2, 4, 5, 6, 8]),
        (["--actor", "bob"], [4, 5, 6, 10]),
        (["--action", "transition_model_version_stage"], [4, 5, 7, 8]),
        (["--decision", "deny"], [11]),
        (["--decision", "allow", "--model", "fraud", "--actor", "carol"], [7, 8, 9]),
        (["--limit", "3"], [1, 2, 3]),
        (["--newest-first"], list(range(11, 0, -1))),
        (["--newest-first", "--limit", "2"], [11, 10]),
        (["--model", "fraud", "--version", "2", "--newest-first"], [9, 7, 3]),
        (["--actor", "nobody"], []),
    ],
    ids=[
        "model",
        "version",
        "actor",
        "action",
        "decision",
        "combined",
        "limit",
        "newest-first",
        "newest-first-limit",
        "model-version-newest-first",
        "no-match",
    ],
)
def test_list_filters(story: Story, options: list[str], ids: list[int]) -> None:
    rows = cli_json("audit", "list", "--registry-uri", story.uri, *options)
    assert [r["id"] for r in rows] == ids


def test_list_since_and_until_take_times_from_the_log(story: Story) -> None:
    rows = story.rows()
    pivot = rows[4]["time"]  # row 5: v1 to Production
    since = cli_json("audit", "list", "--registry-uri", story.uri, "--since", pivot)
    until = cli_json("audit", "list", "--registry-uri", story.uri, "--until", pivot)
    # ISO-8601 UTC strings of one format order like the times they denote.
    assert [r["id"] for r in since] == [r["id"] for r in rows if r["time"] >= pivot]
    assert [r["id"] for r in until] == [r["id"] for r in rows if r["time"] <= pivot]
    assert since[0]["id"] <= 5 <= until[-1]["id"]
    window = cli_json(
        "audit",
        "list",
        "--registry-uri",
        story.uri,
        "--since",
        rows[3]["time"],
        "--until",
        rows[5]["time"],
    )
    assert (
        {4, 5, 6}
        <= {r["id"] for r in window}
        <= {r["id"] for r in rows if rows[3]["time"] <= r["time"] <= rows[5]["time"]}
    )
    # The same instant written with an offset, or naive (taken as UTC), selects the same rows.
    instant = datetime.fromisoformat(pivot.replace("Z", "+00:00"))
    for spelling in (instant.astimezone(timezone(timedelta(hours=2))).isoformat(), pivot[:-1]):
        same = cli_json("audit", "list", "--registry-uri", story.uri, "--since", spelling)
        assert [r["id"] for r in same] == [r["id"] for r in since], spelling


def test_list_rejects_a_time_that_is_not_iso_8601(story: Story) -> None:
    result = cli("audit", "list", "--registry-uri", story.uri, "--since", "yesterday")
    assert result.exit_code == 2
    assert "--since" in result.output and "ISO-8601" in result.output


# ---------------------------------------------------------------------- audit export


def test_export_jsonl_has_every_column_and_verifies_offline(story: Story, tmp_path: Path) -> None:
    target = tmp_path / "audit.jsonl"
    result = cli(
        "audit", "export", "--registry-uri", story.uri, "--format", "jsonl", "--to", str(target)
    )
    assert result.exit_code == 0, result.output
    assert f"Exported {len(EXPECTED)} rows" in result.stderr
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    assert exported == story.rows()
    assert all(set(row) == set(COLUMNS) for row in exported)
    # An export is evidence on its own: its rows re-chain without the database.
    rechained = [
        {**row, "details": json.dumps(row["details"], sort_keys=True) if row["details"] else None}
        for row in exported
    ]
    result_ok = verify_rows(rechained)
    assert result_ok.ok, result_ok.problem
    assert result_ok.head_hash == exported[-1]["hash"]


def test_export_csv_has_every_column_including_the_hash(story: Story, tmp_path: Path) -> None:
    target = tmp_path / "audit.csv"
    result = cli(
        "audit", "export", "--registry-uri", story.uri, "--format", "csv", "--to", str(target)
    )
    assert result.exit_code == 0, result.output
    with target.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        parsed = list(reader)
    rows = story.rows()
    assert [int(r["id"]) for r in parsed] == [r["id"] for r in rows]
    for got, want in zip(parsed, rows, strict=True):
        assert got["hash"] == want["hash"] and got["prev_hash"] == want["prev_hash"]
        assert got["time"] == want["time"] and got["actor"] == want["actor"]
        assert json.loads(got["details"]) == want["details"]
        assert got["version"] == ("" if want["version"] is None else str(want["version"]))


def test_export_applies_the_filters_and_writes_to_stdout(story: Story) -> None:
    result = cli(
        "audit",
        "export",
        "--registry-uri",
        story.uri,
        "--format",
        "jsonl",
        "--actor",
        "carol",
        "--to",
        "-",
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [7, 8, 9]


# ---------------------------------------------------------------------- verify, checkpoint


def test_verify_reports_the_row_count(backend_story: Story) -> None:
    result = cli("audit", "verify", "--registry-uri", backend_story.uri)
    assert result.exit_code == 0, result.output
    assert f"OK: {len(EXPECTED)} audit rows, chain intact" in result.stdout
    data = cli_json("audit", "verify", "--registry-uri", backend_story.uri)
    assert data["ok"] is True and data["rows"] == len(EXPECTED)
    assert data["head_id"] == len(EXPECTED)
    assert data["head_hash"] == backend_story.rows()[-1]["hash"]
    assert data["broken_id"] is None


def test_verify_an_empty_log(sqlite_registry_uri: str) -> None:
    result = cli("audit", "verify", "--registry-uri", sqlite_registry_uri)
    assert result.exit_code == 0, result.output
    assert "OK: 0 audit rows" in result.stdout


def test_checkpoint_then_verify_against_it(backend_story: Story, tmp_path: Path) -> None:
    checkpoint = tmp_path / "head.json"
    result = cli(
        "audit", "checkpoint", "--registry-uri", backend_story.uri, "--to", str(checkpoint)
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(checkpoint.read_text())
    last = backend_story.rows()[-1]
    assert (saved["rows"], saved["head_id"], saved["head_hash"]) == (
        len(EXPECTED),
        last["id"],
        last["hash"],
    )
    result = cli(
        "audit", "verify", "--registry-uri", backend_story.uri, "--checkpoint", str(checkpoint)
    )
    assert result.exit_code == 0, result.output
    assert f"consistent with checkpoint {checkpoint}" in result.stdout
    # The log grows after the checkpoint: still consistent with it.
    build_store(backend_story.uri).create_registered_model("later")
    data = cli_json(
        "audit", "verify", "--registry-uri", backend_story.uri, "--checkpoint", str(checkpoint)
    )
    assert data["ok"] is True and data["rows"] == len(EXPECTED) + 1


def test_checkpoint_refuses_a_broken_chain(story: Story, tmp_path: Path) -> None:
    engine = sa.create_engine(story.uri.removeprefix("governed+"), poolclass=sa.pool.NullPool)
    tamper(engine, audit_log.update().where(audit_log.c.id == 4).values(actor="eve"))
    engine.dispose()
    checkpoint = tmp_path / "head.json"
    result = cli("audit", "checkpoint", "--registry-uri", story.uri, "--to", str(checkpoint))
    assert result.exit_code == 1
    assert "Refusing to checkpoint a broken chain: row 4" in result.output
    assert not checkpoint.exists()


def test_verify_with_a_file_that_is_not_a_checkpoint_fails_cleanly(
    story: Story, tmp_path: Path
) -> None:
    bogus = tmp_path / "not-a-checkpoint.json"
    bogus.write_text('{"rows": 3}')
    result = CliRunner().invoke(
        main, ["audit", "verify", "--registry-uri", story.uri, "--checkpoint", str(bogus)]
    )
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code != 0
    assert "is not an audit checkpoint" in result.output


# ---------------------------------------------------------------------- history


def test_history_lists_stage_and_alias_changes(backend_story: Story) -> None:
    events = cli_json("history", "fraud", "--registry-uri", backend_story.uri)
    moves = [
        (e["kind"], e["name"], e["version"], e["before"], e["after"], e["actor"])
        for e in events
        if e["name"] != "None"
    ]
    assert moves == [
        ("stage", "Staging", 1, "None", "Staging", "bob"),
        ("stage", "Production", 1, "Staging", "Production", "bob"),
        ("alias", "champion", 1, None, "1", "bob"),
        ("stage", "Production", 2, "None", "Production", "carol"),
        ("stage", "Archived", 1, "Production", "Archived", "carol"),
        ("alias", "champion", 2, "1", "2", "carol"),
    ]
    assert {e["audit_id"] for e in events} <= set(range(1, len(EXPECTED) + 1))
    # The refused attempt is no part of the history.
    assert all(e["actor"] != "mallory" for e in events)
    table = cli("history", "fraud", "--registry-uri", backend_story.uri)
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split() == [
        "TIME",
        "ACTOR",
        "KIND",
        "NAME",
        "VERSION",
        "BEFORE",
        "AFTER",
        "ACTION",
    ]


def test_history_at_shows_who_held_production_and_champion_then(backend_story: Story) -> None:
    rows = backend_story.rows()
    time_of = {r["id"]: r["time"] for r in rows}

    def holders(at: str) -> list[tuple[str, str, int, str]]:
        data = cli_json("history", "fraud", "--registry-uri", backend_story.uri, "--at", at)
        return [(h["kind"], h["name"], h["version"], h["actor"]) for h in data]

    assert holders(time_of[1]) == []
    assert holders(time_of[4]) == [("stage", "Staging", 1, "bob")]
    assert holders(time_of[6]) == [
        ("stage", "Production", 1, "bob"),
        ("alias", "champion", 1, "bob"),
    ]
    assert holders(time_of[9]) == [
        ("stage", "Production", 2, "carol"),
        ("alias", "champion", 2, "carol"),
    ]
    since = cli_json("history", "fraud", "--registry-uri", backend_story.uri, "--at", time_of[6])
    assert {h["since"] for h in since} == {time_of[5], time_of[6]}
    text = cli("history", "fraud", "--registry-uri", backend_story.uri, "--at", time_of[6])
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(f"fraud at {time_of[6]}:")


def test_history_of_a_model_without_moves_is_empty(story: Story) -> None:
    assert [
        e for e in cli_json("history", "churn", "--registry-uri", story.uri) if e["name"] != "None"
    ] == []
    assert cli_json("history", "no-such-model", "--registry-uri", story.uri) == []


def test_history_follows_a_rename(story: Story) -> None:
    build_store(story.uri).rename_registered_model("fraud", "fraud-v2")
    holders = cli_json(
        "history", "fraud-v2", "--registry-uri", story.uri, "--at", story.rows()[-1]["time"]
    )
    assert [(h["kind"], h["name"], h["version"]) for h in holders] == [
        ("stage", "Production", 2),
        ("alias", "champion", 2),
    ]


# ---------------------------------------------------------------------- whoami, db, URIs


def test_whoami_shows_the_asserted_user() -> None:
    result = cli("whoami", env={"MLFLOW_TRACKING_USERNAME": "alice"})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("alice (identity source: asserted)")
    assert "anyone with database access can claim any name" in result.stdout
    data = json.loads(cli("whoami", "--json", env={"MLFLOW_TRACKING_USERNAME": "alice"}).stdout)
    assert data == {"user": "alice", "identity_source": "asserted", "groups": []}


def test_whoami_falls_back_to_the_os_login() -> None:
    data = json.loads(cli("whoami", "--json").stdout)
    assert data["user"] == getpass.getuser()
    assert data["identity_source"] == "asserted"


def test_db_upgrade_creates_the_tables_and_is_idempotent(tmp_path: Path) -> None:
    uri = f"governed+sqlite:///{tmp_path / 'brand-new.db'}"
    for _ in range(2):
        result = cli("db", "upgrade", "--registry-uri", uri)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == f"Governance tables at revision {schema.HEAD_REVISION}."
    data = cli_json("db", "upgrade", "--registry-uri", uri)
    assert data == {"revision": schema.HEAD_REVISION, "version_table": schema.VERSION_TABLE}
    engine = sa.create_engine(uri.removeprefix("governed+"), poolclass=sa.pool.NullPool)
    inspector = sa.inspect(engine)
    assert {
        "governance_audit_log",
        "governance_audit_head",
        "registered_models",
        schema.VERSION_TABLE,
    } <= set(inspector.get_table_names())
    engine.dispose()


def test_db_upgrade_keeps_the_audit_log(story: Story) -> None:
    before = story.rows()
    result = cli("db", "upgrade", "--registry-uri", story.uri)
    assert result.exit_code == 0, result.output
    assert story.rows() == before
    assert cli_json("audit", "verify", "--registry-uri", story.uri)["ok"] is True


def test_registry_uri_comes_from_the_environment_or_is_required(story: Story) -> None:
    result = cli("audit", "verify", env={"MLFLOW_REGISTRY_URI": story.uri})
    assert result.exit_code == 0, result.output
    missing = cli("audit", "verify")
    assert missing.exit_code == 2
    assert "--registry-uri" in missing.output


def test_unsupported_registry_uri_is_a_clean_error() -> None:
    result = cli("audit", "list", "--registry-uri", "governed+oracle://db/x")
    assert result.exit_code == 1
    assert "Supported schemes: governed+sqlite://" in result.output
    assert "Traceback" not in result.output
