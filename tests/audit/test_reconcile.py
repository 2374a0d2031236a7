"""``audit reconcile``: the registry against what the audit log says, on every backend.

A clean governed history (versions created, moved with archive_existing_versions, aliases
moved, a version deleted with its alias, a model renamed, a model deleted, a refusal that
changed nothing and an audit-only move that went through) reconciles with no difference.
Then someone with the database password changes the registry with plain SQL, and each
change is reported with its kind, the object, what the log expected (and which row set
it) and what the registry holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from mlflow.exceptions import MlflowException

from mlflow_governance.audit import reconcile as reconcile_module
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.cli import main

POLICY = """\
version: 1
mode: {mode}
roles:
  admin: ["*"]
  viewer: [read]
bindings:
  - role: admin
    principals: ["user:alice"]
  - role: viewer
    principals: ["user:oscar"]
"""


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Switch the policy in force: ``enforce`` or ``audit-only`` (alice admin, oscar reads)."""

    def use(mode: str) -> None:
        path = tmp_path / f"policy-{mode}.yaml"
        path.write_text(POLICY.format(mode=mode), encoding="utf-8")
        monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", str(path))

    return use


@pytest.fixture
def governed(store: Any, as_user: Callable[[str], None], policy: Callable[[str], None]) -> Any:
    """A registry whose every change went through the plugin: its log tells the whole story."""
    policy("enforce")
    as_user("alice")
    store.create_registered_model("fraud")
    for number in (1, 2, 3):
        store.create_model_version("fraud", f"s3://models/fraud/{number}")
    store.transition_model_version_stage("fraud", 1, "Staging", False)
    store.transition_model_version_stage("fraud", 1, "Production", False)
    store.transition_model_version_stage("fraud", 2, "Production", True)  # archives 1
    store.set_registered_model_alias("fraud", "champion", 1)
    store.set_registered_model_alias("fraud", "champion", 2)
    store.set_registered_model_alias("fraud", "challenger", 3)
    as_user("mallory")  # no role: refused, nothing changes (a deny row)
    with pytest.raises(MlflowException):
        store.transition_model_version_stage("fraud", 3, "Production", False)
    policy("audit-only")  # the same move goes through, recorded as would-deny
    store.transition_model_version_stage("fraud", 3, "Staging", False)
    policy("enforce")
    as_user("alice")
    store.delete_model_version("fraud", 3)  # takes @challenger along
    store.rename_registered_model("fraud", "fraud-v2")
    store.create_registered_model("scratch")
    store.create_model_version("scratch", "s3://models/scratch/1")
    store.set_registered_model_alias("scratch", "tmp", 1)
    store.delete_registered_model("scratch")
    with store.engine.connect() as conn:
        decisions = set(conn.execute(sa.select(audit_log.c.decision)).scalars())
    assert decisions == {"allow", "deny", "would-deny"}
    return store


def reconcile(registry_uri: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    """Run ``audit reconcile --json`` and as text; return exit code, JSON and text."""
    runner = CliRunner()
    as_json = runner.invoke(
        main, ["audit", "reconcile", "--registry-uri", registry_uri, "--json", *extra]
    )
    text = runner.invoke(main, ["audit", "reconcile", "--registry-uri", registry_uri, *extra])
    assert as_json.exit_code == text.exit_code, (as_json.output, text.output)
    assert "Traceback" not in text.output
    return as_json.exit_code, json.loads(as_json.stdout), text.stdout


def audit_id(sql: sa.Engine, **where: Any) -> int:
    """The newest audit row matching the column values."""
    c = audit_log.c
    query = sa.select(sa.func.max(c.id)).where(*(c[k] == v for k, v in where.items()))
    with sql.connect() as conn:
        found = conn.execute(query).scalar()
    assert found is not None, where
    return int(found)


def test_a_governed_history_reconciles_with_no_difference(governed: Any, registry_uri: str) -> None:
    code, report, text = reconcile(registry_uri)
    assert code == 0, text
    assert report["ok"] is True and report["differences"] == []
    # fraud-v2 with versions 1..3 (3 soft-deleted) and @champion; scratch is gone.
    assert (report["models"], report["versions"], report["aliases"]) == (1, 3, 1)
    assert report["rows"] > 20 and report["head_id"] >= report["rows"]
    assert text.startswith("OK: the registry matches the audit log (")


def _stage_updated(sql: sa.Connection) -> None:
    sql.exec_driver_sql(
        "UPDATE model_versions SET current_stage = 'Production' "
        "WHERE name = 'fraud-v2' AND version = 1"
    )


def _version_inserted(sql: sa.Connection) -> None:
    sql.exec_driver_sql(
        "INSERT INTO model_versions (workspace, name, version, creation_time, "
        "last_updated_time, current_stage, source, status) VALUES "
        "('default', 'fraud-v2', 7, 0, 0, 'Production', 's3://elsewhere/model', 'READY')"
    )


def _alias_deleted(sql: sa.Connection) -> None:
    sql.exec_driver_sql(
        "DELETE FROM registered_model_aliases WHERE name = 'fraud-v2' AND alias = 'champion'"
    )


def _alias_moved(sql: sa.Connection) -> None:
    sql.exec_driver_sql(
        "UPDATE registered_model_aliases SET version = 1 "
        "WHERE name = 'fraud-v2' AND alias = 'champion'"
    )


def _model_renamed(sql: sa.Connection) -> None:
    # PostgreSQL and MariaDB cascade the name to the versions and aliases (MLflow's
    # foreign keys say ON UPDATE CASCADE); SQLite does not enforce them, so do it by hand.
    for table in ("registered_models", "model_versions", "registered_model_aliases"):
        sql.exec_driver_sql(f"UPDATE {table} SET name = 'stolen' WHERE name = 'fraud-v2'")


def _version_hard_deleted(sql: sa.Connection) -> None:
    sql.exec_driver_sql("DELETE FROM model_versions WHERE name = 'fraud-v2' AND version = 1")


def _model_inserted(sql: sa.Connection) -> None:
    sql.exec_driver_sql(
        "INSERT INTO registered_models (workspace, name, creation_time, last_updated_time) "
        "VALUES ('default', 'shadow', 0, 0)"
    )


def _expect_stage(sql: sa.Engine) -> list[dict[str, Any]]:
    archived = audit_id(sql, model="fraud", version=1, stage_after="Archived")
    return [
        _diff("stage_differs", version=1, expected="Archived", row=archived, actual="Production")
    ]


def _expect_insert(sql: sa.Engine) -> list[dict[str, Any]]:
    return [_diff("version_not_in_log", version=7, actual="Production")]


def _expect_alias_gone(sql: sa.Engine) -> list[dict[str, Any]]:
    moved = audit_id(sql, alias="champion", alias_after=2)
    return [_diff("alias_missing", alias="champion", expected=2, row=moved)]


def _expect_alias_moved(sql: sa.Engine) -> list[dict[str, Any]]:
    moved = audit_id(sql, alias="champion", alias_after=2)
    return [_diff("alias_differs", alias="champion", expected=2, row=moved, actual=1)]


def _expect_rename(sql: sa.Engine) -> list[dict[str, Any]]:
    renamed = audit_id(sql, action="rename_registered_model")
    return [
        _diff("model_missing", expected="exists", row=renamed),
        _diff(
            "model_not_in_log",
            model="stolen",
            actual={"exists": True, "versions": [1, 2], "aliases": {"champion": 2}},
        ),
    ]


def _expect_version_gone(sql: sa.Engine) -> list[dict[str, Any]]:
    archived = audit_id(sql, model="fraud", version=1, stage_after="Archived")
    return [_diff("version_missing", version=1, expected="Archived", row=archived)]


def _expect_model(sql: sa.Engine) -> list[dict[str, Any]]:
    return [
        _diff(
            "model_not_in_log",
            model="shadow",
            actual={"exists": True, "versions": [], "aliases": {}},
        )
    ]


def _diff(
    kind: str,
    *,
    model: str = "fraud-v2",
    version: int | None = None,
    alias: str | None = None,
    expected: Any = None,
    row: int | None = None,
    actual: Any = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "workspace": "default",
        "model": model,
        "version": version,
        "alias": alias,
        "expected": expected,
        "expected_row": row,
        "actual": actual,
    }


TAMPERING: dict[str, tuple[Callable[[sa.Connection], None], Callable[[sa.Engine], Any]]] = {
    "stage-updated": (_stage_updated, _expect_stage),
    "version-inserted": (_version_inserted, _expect_insert),
    "alias-deleted": (_alias_deleted, _expect_alias_gone),
    "alias-moved": (_alias_moved, _expect_alias_moved),
    "model-renamed": (_model_renamed, _expect_rename),
    "version-hard-deleted": (_version_hard_deleted, _expect_version_gone),
    "model-inserted": (_model_inserted, _expect_model),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_change_made_in_sql_is_reported(
    governed: Any, registry_uri: str, sql: sa.Engine, case: str
) -> None:
    tamper, expect = TAMPERING[case]
    with sql.begin() as conn:
        tamper(conn)
    code, report, text = reconcile(registry_uri)
    assert code == 1, text
    assert report["ok"] is False
    want = expect(sql)
    ordered = sorted(want, key=lambda d: (d["workspace"], d["model"]))
    assert report["differences"] == ordered
    noun = "difference" if len(want) == 1 else "differences"
    assert text.startswith(f"{len(want)} {noun} between the registry and the audit log")
    for difference in want:
        assert difference["kind"] in text


def test_a_baseline_accepts_what_was_reviewed_and_nothing_else(
    governed: Any, registry_uri: str, sql: sa.Engine, tmp_path: Path
) -> None:
    # A model older than the plugin: reviewed once, then accepted.
    with sql.begin() as conn:
        _model_inserted(conn)
    code, first, _ = reconcile(registry_uri)
    assert code == 1
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(first), encoding="utf-8")
    code, report, text = reconcile(registry_uri, "--baseline", str(baseline))
    assert code == 0, text
    assert report["accepted"] == 1 and report["differences"] == []
    assert "1 accepted by the baseline" in text
    # A later change to the registry behind the plugin's back is reported all the same.
    with sql.begin() as conn:
        _stage_updated(conn)
    code, report, _ = reconcile(registry_uri, "--baseline", str(baseline))
    assert code == 1
    assert [d["kind"] for d in report["differences"]] == ["stage_differs"]
    assert report["accepted"] == 1


def test_a_baseline_that_is_no_report_is_a_usage_error(tmp_path: Path, registry_uri: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["audit", "reconcile", "--registry-uri", registry_uri, "--baseline", str(bad)]
    )
    assert result.exit_code == 2
    assert "audit reconcile --json" in result.output


def test_the_log_is_read_in_pages(
    governed: Any, registry_uri: str, sql: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page boundary anywhere changes nothing: two rows a page gives the same report."""
    with sql.begin() as conn:
        _alias_moved(conn)
    _, whole, _ = reconcile(registry_uri)
    monkeypatch.setattr(reconcile_module, "_PAGE", 2)
    _, paged, _ = reconcile(registry_uri)
    assert paged == whole and whole["differences"]


def test_reconcile_without_audit_read_is_refused_and_audited(
    governed: Any, registry_uri: str, sql: sa.Engine, as_user: Callable[[str], None]
) -> None:
    as_user("oscar")  # reads models, may not read the audit log
    result = CliRunner().invoke(main, ["audit", "reconcile", "--registry-uri", registry_uri])
    assert result.exit_code == 1
    assert "Error: " in result.stderr and "audit:read" in result.stderr
    assert "Traceback" not in result.output
    with sql.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.actor, audit_log.c.decision).where(
                audit_log.c.action == "reconcile_audit"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("oscar", "deny")]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    from tests.server.conftest import governance_server

    with governance_server(tmp_path) as gov:
        yield gov


@pytest.mark.slow
def test_over_rest_a_reader_is_refused_with_403_and_an_auditor_gets_the_report(
    server: Any,
) -> None:
    from tests.server.conftest import register

    register(server, "alice", "rest-model")
    refused = server.call("oscar", "GET", "/audit/reconcile", expect=403)
    assert refused["error_code"] == "PERMISSION_DENIED"
    report = server.call("dave", "GET", "/audit/reconcile")
    assert report["ok"] is True and report["models"] == 1, report
    rows = server.call(
        "dave", "GET", "/audit", params={"action": "reconcile_audit", "decision": "deny"}
    )
    assert [(r["actor"], r["identity_source"]) for r in rows] == [("oscar", "server")]


def test_writes_committing_while_it_runs_are_never_half_seen(
    governed: Any, registry_uri: str
) -> None:
    """The log and the registry are read in one snapshot: a governed write that commits
    meanwhile is wholly in it or wholly out, never a false difference."""
    import threading

    from mlflow_governance.application import GovernanceService
    from mlflow_governance.identity import current_identity

    service = GovernanceService(governed)
    me = current_identity()  # alice, admin
    stop = threading.Event()
    failures: list[BaseException] = []
    written: list[int] = []

    def write() -> None:
        try:
            while not stop.is_set():
                version = int(governed.create_model_version("fraud-v2", "s3://m/x").version)
                governed.transition_model_version_stage("fraud-v2", version, "Staging", False)
                governed.set_registered_model_alias("fraud-v2", "newest", version)
                written.append(version)
        except BaseException as exc:  # the test fails with it below
            failures.append(exc)

    writer = threading.Thread(target=write, name="reconcile-writer")
    writer.start()
    try:
        reports = []
        while len(reports) < 15 or (len(written) < 3 and writer.is_alive()):
            reports.append(service.audit_reconcile(me))
            assert reports[-1]["differences"] == [], reports[-1]
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not writer.is_alive() and not failures, failures
    assert written and len({r["head_id"] for r in reports}) > 1  # writes did interleave
