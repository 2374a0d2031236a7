"""Tampering with the audit log directly in the database, and what ``audit verify`` says.

Run on SQLite, PostgreSQL and MariaDB: the attacker has the database password and edits,
deletes or forges rows with plain SQL. Edits and deletions inside the log are found by the
chain alone and name the row; cutting or rewriting the newest rows *and* the head row
leaves a valid but different chain, which only a checkpoint kept elsewhere reveals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from mlflow_governance.audit.chain import HASHED_FIELDS, row_hash
from mlflow_governance.audit.query import verify as chain_verify
from mlflow_governance.audit.tables import GENESIS_HASH, HEAD_ROW_ID, audit_head, audit_log
from mlflow_governance.cli import main
from tests.audit.conftest import ROWS
from tests.tamper import tamper


def verify(registry_uri: str, *extra: str) -> tuple[int, str, dict[str, Any]]:
    """Run ``audit verify`` as text and as JSON; return exit code, text and JSON."""
    runner = CliRunner()
    text = runner.invoke(
        main, ["audit", "verify", "--registry-uri", registry_uri, *extra], catch_exceptions=False
    )
    as_json = runner.invoke(
        main,
        ["audit", "verify", "--registry-uri", registry_uri, *extra, "--json"],
        catch_exceptions=False,
    )
    assert text.exit_code == as_json.exit_code
    return text.exit_code, text.output, json.loads(as_json.stdout)


def verify_json(registry_uri: str) -> tuple[int, dict[str, Any]]:
    """Run ``audit verify --json`` once; return exit code and JSON."""
    result = CliRunner().invoke(
        main,
        ["audit", "verify", "--registry-uri", registry_uri, "--json"],
        catch_exceptions=False,
    )
    return result.exit_code, json.loads(result.stdout)


def checkpoint(registry_uri: str, path: Path) -> Path:
    result = CliRunner().invoke(
        main,
        ["audit", "checkpoint", "--registry-uri", registry_uri, "--to", str(path)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return path


def read_row(engine: sa.Engine, row_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.select(audit_log).where(audit_log.c.id == row_id)).one()._mapping
        )


def update_row(engine: sa.Engine, row_id: int, **values: Any) -> None:
    tamper(engine, audit_log.update().where(audit_log.c.id == row_id).values(**values))


def delete_rows(engine: sa.Engine, *row_ids: int) -> None:
    tamper(engine, audit_log.delete().where(audit_log.c.id.in_(row_ids)))


def set_head(engine: sa.Engine, seq: int, head_hash: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            audit_head.update()
            .where(audit_head.c.id == HEAD_ROW_ID)
            .values(seq=seq, hash=head_hash)
        )


#: One forgery per column an attacker might want to change, each a plausible value.
EDITS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "actor": lambda row: "eve",
    "identity_source": lambda row: "server",
    "action": lambda row: "delete_model_version",
    "model": lambda row: "other-model",
    "version": lambda row: (row["version"] or 0) + 7,
    "stage_before": lambda row: "Production",
    "stage_after": lambda row: "Archived",
    "alias": lambda row: "prod",
    "alias_before": lambda row: 9,
    "alias_after": lambda row: 9,
    "decision": lambda row: "deny" if row["decision"] == "allow" else "allow",
    "reason": lambda row: "approved by the board",
    "rule": lambda row: "bindings[99]",
    "request_id": lambda row: 4242,
    "details": lambda row: '{"key": "forged"}',
    "time": lambda row: row["time"] + timedelta(microseconds=1),
    "client_address": lambda row: "10.9.8.7",
    "user_agent": lambda row: "forged/1.0",
    "prev_hash": lambda row: "f" * 64,
    "hash": lambda row: "e" * 64,
}


def test_every_hashed_column_has_a_forgery() -> None:
    assert set(EDITS) == {*HASHED_FIELDS, "hash"} - {"id"}


#: At the ends of the chain (genesis link, head row) a few edits show the same holds there.
END_EDITS = ("actor", "time", "prev_hash", "hash")


@pytest.mark.parametrize(
    ("row_id", "columns"),
    [(3, tuple(EDITS)), (1, END_EDITS), (ROWS, END_EDITS)],
    ids=["middle-every-column", "first", "newest"],
)
def test_editing_a_row_fails_verify_naming_it(
    registry_uri: str, logged: int, sql: sa.Engine, row_id: int, columns: tuple[str, ...]
) -> None:
    assert verify(registry_uri)[0] == 0
    original = read_row(sql, row_id)
    update_row(sql, row_id, actor="eve")
    code, output, _ = verify(registry_uri)
    assert code == 1 and f"BROKEN: row {row_id}:" in output, output
    update_row(sql, row_id, actor=original["actor"])
    for column in columns:
        update_row(sql, row_id, **{column: EDITS[column](original)})
        code, data = verify_json(registry_uri)
        assert code == 1, (column, data)
        assert f"row {row_id}:" in data["problem"], (column, data)
        assert (data["ok"], data["broken_id"]) == (False, row_id), (column, data)
        update_row(sql, row_id, **{column: original[column]})
        with sql.connect() as conn:
            assert chain_verify(conn).ok, f"restoring {column} did not restore the chain"


def test_deleting_a_middle_row_fails_verify_naming_the_gap(
    registry_uri: str, logged: int, sql: sa.Engine
) -> None:
    delete_rows(sql, 3)
    code, output, data = verify(registry_uri)
    assert code == 1
    assert "BROKEN: row 4:" in output and "row 3 is missing" in output
    assert data["broken_id"] == 4 and data["rows"] == 2
    delete_rows(sql, 2)
    code, output, _ = verify(registry_uri)
    assert code == 1 and "rows 2..3 are missing" in output


def test_deleting_the_newest_row_is_caught_by_the_head_row(
    registry_uri: str, logged: int, sql: sa.Engine
) -> None:
    delete_rows(sql, logged)
    code, output, data = verify(registry_uri)
    assert code == 1
    assert f"the chain ends at row {logged - 1} but its head records row {logged}" in output
    assert data["broken_id"] == logged


def test_cutting_the_tail_and_rewinding_the_head_is_caught_by_a_checkpoint(
    registry_uri: str, logged: int, sql: sa.Engine, tmp_path: Path
) -> None:
    saved = checkpoint(registry_uri, tmp_path / "head.json")
    survivor = read_row(sql, logged - 2)
    delete_rows(sql, logged - 1, logged)
    set_head(sql, logged - 2, survivor["hash"])

    code, output, data = verify(registry_uri)
    assert code == 0, "the truncated chain is internally consistent"
    assert data["rows"] == logged - 2

    code, output, data = verify(registry_uri, "--checkpoint", str(saved))
    assert code == 1
    assert f"rows {logged - 1}..{logged} were cut off" in output
    assert data["broken_id"] == logged - 1


@pytest.mark.parametrize("extra_rows", [0, 2], ids=["same-length", "longer"])
def test_a_rewritten_tail_is_caught_by_a_checkpoint(
    registry_uri: str, logged: int, sql: sa.Engine, tmp_path: Path, extra_rows: int
) -> None:
    saved = checkpoint(registry_uri, tmp_path / "head.json")
    keep = 3
    originals = [read_row(sql, row_id) for row_id in range(keep + 1, logged + 1)]
    prev_hash = read_row(sql, keep)["hash"]
    delete_rows(sql, *range(keep + 1, logged + 1))
    # Blame someone else for rows 4..6 (and add more), chained exactly as the plugin does.
    forged: list[dict[str, Any]] = []
    templates = originals + [originals[-1]] * extra_rows
    for offset, template in enumerate(templates):
        row = {**template, "id": keep + 1 + offset, "actor": "mallory", "prev_hash": prev_hash}
        row["hash"] = prev_hash = row_hash(row)
        forged.append(row)
    with sql.begin() as conn:
        conn.execute(sa.insert(audit_log), forged)
    set_head(sql, forged[-1]["id"], forged[-1]["hash"])

    code, _output, data = verify(registry_uri)
    assert code == 0, "the forged chain is internally consistent"
    assert data["rows"] == logged + extra_rows

    code, output, data = verify(registry_uri, "--checkpoint", str(saved))
    assert code == 1
    assert f"row {logged}" in output and "BROKEN" in output
    assert "hash differs from the checkpoint" in output
    assert data["broken_id"] == logged


def test_deleting_the_head_row_with_the_newest_rows_fails_verify(
    registry_uri: str, logged: int, sql: sa.Engine
) -> None:
    delete_rows(sql, logged)
    with sql.begin() as conn:
        conn.execute(audit_head.delete())
    try:
        code, output, data = verify(registry_uri)
        assert code == 1, output
        assert "head" in output and data["ok"] is False
    finally:
        # The server databases are reused by later tests, whose wipe only resets this row.
        with sql.begin() as conn:
            conn.execute(audit_head.insert().values(id=HEAD_ROW_ID, seq=0, hash=GENESIS_HASH))
