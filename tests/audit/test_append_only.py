"""The audit log is append-only in the database itself (migration 0006).

Triggers refuse UPDATE and DELETE through plain SQL on every backend, whoever connects.
DELETE is allowed only for rows at or below the boundary retention records in
``governance_audit_anchor`` (in the deleting transaction). Governed writes never meet the
triggers, and ``db upgrade`` adds them to a database created before they existed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from mlflow_governance import db as schema
from mlflow_governance.audit.anchor import audit_anchor
from mlflow_governance.audit.query import verify
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.audit.writer import DECISION_ALLOW, AuditEntry
from mlflow_governance.cli import main
from mlflow_governance.db import append_only
from mlflow_governance.identity import Identity
from tests.audit.conftest import ROWS
from tests.databases import SERVERS
from tests.tamper import tamper

EXPECTED_TRIGGERS = {
    "sqlite": [append_only.DELETE_TRIGGER, append_only.UPDATE_TRIGGER],
    "mysql": [append_only.DELETE_TRIGGER, append_only.UPDATE_TRIGGER],
    "postgresql": [
        append_only.DELETE_TRIGGER,
        append_only.TRUNCATE_TRIGGER,
        append_only.UPDATE_TRIGGER,
    ],
}


def _rows(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(audit_log).order_by("id"))]


def _refused(engine: sa.Engine, statement: str) -> str:
    """Run ``statement`` in its own transaction; return the database's refusal."""
    with pytest.raises(sa.exc.DBAPIError) as info, engine.begin() as conn:
        conn.execute(sa.text(statement))
    return str(info.value.orig)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE governance_audit_log SET actor = 'eve' WHERE id = 3",
        "UPDATE governance_audit_log SET reason = reason",
        "UPDATE governance_audit_log SET hash = prev_hash WHERE id = 6",
    ],
    ids=["one-column", "every-row-no-op", "hash"],
)
def test_update_through_plain_sql_is_refused(
    logged: int, sql: sa.Engine, backend: str, statement: str
) -> None:
    before = _rows(sql)
    message = _refused(sql, statement)
    assert "governance_audit_log is append-only" in message, message
    assert "updated" in message
    assert _rows(sql) == before
    with sql.connect() as conn:
        assert verify(conn).ok


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM governance_audit_log WHERE id = 3",
        "DELETE FROM governance_audit_log WHERE id = 6",
        "DELETE FROM governance_audit_log",
    ],
    ids=["middle", "newest", "all"],
)
def test_delete_through_plain_sql_is_refused(
    logged: int, sql: sa.Engine, backend: str, statement: str
) -> None:
    before = _rows(sql)
    message = _refused(sql, statement)
    assert "governance_audit_log is append-only" in message, message
    assert "deleted" in message
    assert _rows(sql) == before


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_truncate_is_refused_on_postgresql(logged: int, sql: sa.Engine, backend: str) -> None:
    message = _refused(sql, "TRUNCATE governance_audit_log")
    assert "governance_audit_log is append-only: it cannot be truncated" in message
    assert len(_rows(sql)) == ROWS


def _anchor_values(last_id: int, last_hash: str) -> dict[str, object]:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return {
        "first_id": 1,
        "last_id": last_id,
        "last_hash": last_hash,
        "rows": last_id,
        "head_id": ROWS,
        "head_hash": "f" * 64,
        "cut_before": now,
        "archive": "file:///archive",
        "manifest_sha256": "e" * 64,
        "archived_by": "root",
        "archived_at": now,
    }


def test_delete_is_allowed_only_up_to_the_anchor_written_in_the_same_transaction(
    logged: int, sql: sa.Engine, backend: str
) -> None:
    rows = _rows(sql)
    # Without an anchor, not even the oldest row may go.
    assert "append-only" in _refused(sql, "DELETE FROM governance_audit_log WHERE id = 1")
    # An anchor and a delete beyond it, in one transaction: all refused, anchor included.
    with pytest.raises(sa.exc.DBAPIError), sql.begin() as conn:
        conn.execute(sa.insert(audit_anchor).values(**_anchor_values(2, rows[1]["hash"])))
        conn.execute(sa.text("DELETE FROM governance_audit_log WHERE id <= 3"))
    assert _rows(sql) == rows
    with sql.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_anchor)).scalar() == 0
    # As retention does it: the anchor first, then rows up to it.
    with sql.begin() as conn:
        conn.execute(sa.insert(audit_anchor).values(**_anchor_values(2, rows[1]["hash"])))
        conn.execute(sa.text("DELETE FROM governance_audit_log WHERE id <= 2"))
    assert [r["id"] for r in _rows(sql)] == [3, 4, 5, 6]
    # Updates stay refused below and above the boundary.
    assert "append-only" in _refused(sql, "UPDATE governance_audit_log SET actor = 'x'")


def test_governed_writes_never_meet_the_triggers(store, sql: sa.Engine, backend: str) -> None:
    with sql.connect() as conn:
        assert append_only.installed(conn) == EXPECTED_TRIGGERS[backend]
    store.create_registered_model("m")
    for _ in range(3):
        store.create_model_version("m", "file:///x")
    store.transition_model_version_stage("m", 1, "Production", False)
    store.set_registered_model_alias("m", "champion", 1)
    store.delete_registered_model_alias("m", "champion")
    store.delete_model_version("m", 3)
    store.rename_registered_model("m", "m2")
    store.delete_registered_model("m2")
    with sql.connect() as conn:
        result = verify(conn)
    assert result.ok and result.rows == len(_rows(sql)) >= 9


def test_the_tamper_helper_puts_the_triggers_back(logged: int, sql: sa.Engine, backend: str):
    tamper(sql, "UPDATE governance_audit_log SET actor = 'eve' WHERE id = 2")
    with sql.connect() as conn:
        assert append_only.installed(conn) == EXPECTED_TRIGGERS[backend]
        assert not verify(conn).ok
    assert "append-only" in _refused(sql, "UPDATE governance_audit_log SET actor = 'x'")


# ---------------------------------------------------------------------- db upgrade


@contextmanager
def _blank_database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    server = SERVERS[backend]
    problem = server.reachable()
    if problem:
        pytest.skip(problem)
    with server.database("upgrade") as url:
        yield url


def test_db_upgrade_adds_the_triggers_to_a_0005_database(backend: str, tmp_path: Path) -> None:
    with _blank_database(backend, tmp_path) as url:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        schema.upgrade(engine, "0005")
        who = Identity("alice", "asserted")
        with engine.begin() as conn:
            _append_as_before_0007(
                conn,
                [
                    AuditEntry("create_registered_model", who, DECISION_ALLOW, model="m"),
                    AuditEntry("create_registered_model", who, DECISION_ALLOW, model="n"),
                ],
            )
            assert append_only.installed(conn) == []
        result = CliRunner().invoke(
            main, ["db", "upgrade", "--registry-uri", f"governed+{url}", "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["revision"] == schema.HEAD_REVISION
        with engine.connect() as conn:
            assert append_only.installed(conn) == EXPECTED_TRIGGERS[backend]
            assert verify(conn).ok and verify(conn).rows == 2
        assert "append-only" in _refused(engine, "UPDATE governance_audit_log SET actor = 'eve'")
        assert "append-only" in _refused(engine, "DELETE FROM governance_audit_log")
        engine.dispose()


def _append_as_before_0007(conn: sa.Connection, entries: list[AuditEntry]) -> None:
    """Rows as a release before migration 0007 wrote them: the writer moved the head."""
    from mlflow_governance.audit.storable import storage_of
    from mlflow_governance.audit.tables import audit_head, audit_log
    from mlflow_governance.audit.writer import _chain

    seq, prev = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).one()
    rows = _chain(entries, storage_of(conn), int(seq) + 1, prev)
    conn.execute(sa.insert(audit_log), rows)
    conn.execute(sa.update(audit_head).values(seq=rows[-1]["id"], hash=rows[-1]["hash"]))
