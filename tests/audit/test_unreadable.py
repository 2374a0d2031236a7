"""Rows edited behind the plugin's back into values their columns cannot be read as.

An attacker with the database password writes what the database allows but no audit row
can hold: a ``time`` of ``garbage`` (SQLite keeps any text), ``infinity`` (PostgreSQL has
it, Python does not), a zero date (MariaDB's default mode allows it), bytes that are not
UTF-8 or a BLOB in a text column (SQLite). ``audit verify`` must report the row as broken
and say what could not be read, never end with a traceback, and ``audit checkpoint`` must
refuse the chain.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from mlflow_governance.audit import query
from mlflow_governance.audit.query import make_checkpoint
from mlflow_governance.audit.query import verify as chain_verify
from mlflow_governance.cli import main
from tests.audit.test_tamper import verify as cli_verify
from tests.tamper import triggers_off

BAD_ROW = 3

#: Per backend: a corrupt time the database accepts, and what the report quotes of it.
CORRUPT_TIME = {
    "sqlite": ("garbage", "garbage"),
    "postgresql": ("infinity", "infinity"),
    "mysql": ("0000-00-00 00:00:00", "0000-00-00"),
}


def corrupt(engine: sa.Engine, backend: str, statement: str) -> None:
    with engine.begin() as conn, triggers_off(conn):
        if backend == "mysql":
            # The attacker's own session may allow what the server's default mode refuses.
            conn.execute(sa.text("SET SESSION sql_mode = ''"))
        conn.execute(sa.text(statement))


@pytest.mark.parametrize("batch", [2, 4, 5000], ids=["page-start", "page-middle", "one-page"])
def test_a_time_that_cannot_be_read_is_reported_at_its_row(
    registry_uri: str,
    logged: int,
    sql: sa.Engine,
    backend: str,
    batch: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Small pages put the bad row first in a page, or amid rows that must still be checked.
    monkeypatch.setattr(query, "_VERIFY_BATCH", batch)
    value, quoted = CORRUPT_TIME[backend]
    corrupt(sql, backend, f"UPDATE governance_audit_log SET time = '{value}' WHERE id = {BAD_ROW}")

    with sql.connect() as conn:
        result = chain_verify(conn)
    assert (result.ok, result.broken_id, result.rows, result.head_id) == (
        False,
        BAD_ROW,
        BAD_ROW - 1,
        BAD_ROW - 1,
    )
    assert result.problem is not None
    assert result.problem.startswith(f"row {BAD_ROW}: its time could not be read")
    assert quoted in result.problem, result.problem

    code, output, data = cli_verify(registry_uri)
    assert code == 1
    assert output.startswith(f"BROKEN: row {BAD_ROW}: its time"), output
    assert "Traceback" not in output
    assert (data["ok"], data["broken_id"], data["problem"]) == (False, BAD_ROW, result.problem)

    result = CliRunner().invoke(
        main,
        ["audit", "checkpoint", "--registry-uri", registry_uri, "--to", str(tmp_path / "c")],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert f"Refusing to checkpoint a broken chain: row {BAD_ROW}" in result.output
    assert not (tmp_path / "c").exists()


def test_an_unreadable_newest_row_is_reported(logged: int, sql: sa.Engine, backend: str) -> None:
    value, _quoted = CORRUPT_TIME[backend]
    corrupt(sql, backend, f"UPDATE governance_audit_log SET time = '{value}' WHERE id = {logged}")
    with sql.connect() as conn:
        _checkpoint, result = make_checkpoint(conn)
    assert (result.ok, result.broken_id, result.rows) == (False, logged, logged - 1)


def test_a_missing_row_before_an_unreadable_one_is_reported_first(
    logged: int, sql: sa.Engine, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query, "_VERIFY_BATCH", 2)
    value, _quoted = CORRUPT_TIME[backend]
    corrupt(sql, backend, f"UPDATE governance_audit_log SET time = '{value}' WHERE id = 4")
    corrupt(sql, backend, "DELETE FROM governance_audit_log WHERE id = 3")
    with sql.connect() as conn:
        result = chain_verify(conn)
    assert (result.ok, result.broken_id) == (False, 4)
    assert result.problem == "row 4: row 3 is missing (deleted)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("CAST(X'ff6576' AS TEXT)", "its actor could not be read (Could not decode to UTF-8"),
        ("X'657665'", "its actor could not be read as str: b'eve'"),
        ("NULL", "its actor is empty"),
    ],
    ids=["not-utf8", "blob", "null"],
)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_text_that_is_not_text_is_reported(
    logged: int, sql: sa.Engine, backend: str, value: str, expected: str
) -> None:
    # SQLite's type affinity keeps whatever is written. NOT NULL aside, which a copy of
    # the table made with plain SQL no longer has.
    with sql.begin() as conn, triggers_off(conn):
        if value == "NULL":
            conn.execute(sa.text("CREATE TABLE copy AS SELECT * FROM governance_audit_log"))
            conn.execute(sa.text("DROP TABLE governance_audit_log"))
            conn.execute(sa.text("ALTER TABLE copy RENAME TO governance_audit_log"))
        conn.execute(sa.text(f"UPDATE governance_audit_log SET actor = {value} WHERE id = 2"))
    with sql.connect() as conn:
        result = chain_verify(conn)
    assert (result.ok, result.broken_id, result.rows) == (False, 2, 1)
    assert result.problem is not None and result.problem.startswith(f"row 2: {expected}")


def test_a_lost_connection_is_not_blamed_on_a_row(
    logged: int, sql: sa.Engine, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Errors that are no row's fault propagate: only a row that fails alone is named.
    monkeypatch.setattr(query, "_VERIFY_BATCH", 2)
    with sql.connect() as conn:
        original = conn.execute
        calls = 0

        def flaky(statement: object, *args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            if calls == 2:  # the second page
                raise sa.exc.OperationalError("SELECT", {}, Exception("server closed"))
            return original(statement, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(conn, "execute", flaky)
        with pytest.raises(sa.exc.OperationalError):
            chain_verify(conn)
