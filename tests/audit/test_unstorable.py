"""Hostile values in audit rows: the row is always written, in a form the database stores.

A refused attempt is recorded with the caller's own input. Names too long for their
column, NUL bytes (PostgreSQL refuses them), lone surrogates (not UTF-8), characters the
column's character set lacks and integers out of range must not turn the refusal into a
crash: the writer stores a safe form (escaped, cut to fit, ending in a marker) and the
original's SHA-256 and length under ``details.unstorable``, and the chain still verifies.
Run on SQLite, PostgreSQL and MariaDB, and on MariaDB databases whose default character
set is narrower than utf8mb4.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException

from mlflow_governance.audit import storable
from mlflow_governance.audit.query import verify as chain_verify
from mlflow_governance.audit.storable import UNSTORABLE
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.audit.writer import AuditEntry, append
from mlflow_governance.identity import SOURCE_ASSERTED, Identity, acting_as
from tests.audit.test_tamper import verify as cli_verify
from tests.databases import REQUIRE, SERVERS

LONG_NAME = "fraud-" + "x" * 9994  # 10,000 characters
EMOJI = "fraud-\U0001f600"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def entry(user: str = "alice", **fields: Any) -> AuditEntry:
    return AuditEntry(
        action=fields.pop("action", "read"),
        identity=Identity(
            user,
            SOURCE_ASSERTED,
            client_address=fields.pop("client_address", None),
            user_agent=fields.pop("user_agent", None),
        ),
        decision=fields.pop("decision", "deny"),
        **fields,
    )


def append_alone(engine: sa.Engine, *entries: AuditEntry) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        return append(conn, list(entries))


def stored_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(audit_log).order_by("id"))]


def limit_of(column: str) -> int | None:
    return getattr(audit_log.c[column].type, "length", None)


def assert_safe_form(row: dict[str, Any], column: str, original: str) -> None:
    """The column holds a safe form of ``original``, matched by details.unstorable."""
    stored = row[column]
    record = json.loads(row["details"])[UNSTORABLE][column]
    assert record == {"sha256": sha256(original), "length": len(original)}, column
    assert stored != original and "\x00" not in stored, column
    assert stored.endswith(f"...[sha256:{record['sha256'][:12]}]"), (column, stored[-40:])
    limit = limit_of(column)
    assert limit is None or len(stored) <= limit, column
    stored.encode("utf-8")  # no lone surrogates left


def assert_as_is(row: dict[str, Any], column: str, original: Any) -> None:
    assert row[column] == original, column
    details = json.loads(row["details"]) if row["details"] else {}
    assert column not in details.get(UNSTORABLE, {}), column


def assert_verifies(engine: sa.Engine, registry_uri: str) -> None:
    with engine.connect() as conn:
        result = chain_verify(conn)
    assert result.ok, result.problem
    code, output, data = cli_verify(registry_uri)
    assert code == 0 and output.startswith("OK:"), output
    assert data["ok"] is True and data["rows"] == result.rows


# ---------------------------------------------------------------------- every backend


def test_names_too_long_for_their_column(sql: sa.Engine, registry_uri: str, backend: str) -> None:
    fields = {
        "model": LONG_NAME,
        "alias": "a" * 300,
        "rule": "r" * 300,
        "workspace": "w" * 100,
        "stage_after": "S" * 40,
        "client_address": "1" * 100,
        "user_agent": "u" * 1000,
    }
    returned = append_alone(sql, entry("m" * 300, **fields))
    [row] = stored_rows(sql)
    assert {k: row[k] for k in returned[0]} == returned[0], "append returns what is stored"
    for column, original in {**fields, "actor": "m" * 300}.items():
        if backend == "sqlite":  # SQLite enforces no declared length: stored as is
            assert_as_is(row, column, original)
        else:
            assert_safe_form(row, column, original)
            assert row[column].startswith(original[:8]), "a readable prefix is kept"
    assert_verifies(sql, registry_uri)


def test_nul_and_lone_surrogates_are_escaped_on_every_backend(
    sql: sa.Engine, registry_uri: str
) -> None:
    fields = {
        "model": "fraud\x00detector",
        "alias": "champ\x00ion",
        "reason": "refused: model 'fraud\x00detector'",
        "rule": "bindings[0]\x00",
        "user_agent": "agent/\ud800",
    }
    append_alone(sql, entry("mal\x00lory", **fields))
    [row] = stored_rows(sql)
    for column, original in {**fields, "actor": "mal\x00lory"}.items():
        assert_safe_form(row, column, original)
    assert row["model"] == "fraud\\x00detector...[sha256:" + sha256("fraud\x00detector")[:12] + "]"
    assert row["user_agent"].startswith("agent/\\ud800...")
    assert_verifies(sql, registry_uri)


def test_a_backslash_in_a_safe_form_is_escaped_so_escapes_stay_unambiguous(
    sql: sa.Engine,
) -> None:
    append_alone(sql, entry(model="a\\x00\x00"))
    [row] = stored_rows(sql)
    assert row["model"].startswith("a\\\\x00\\x00...")


def test_values_that_fit_are_stored_as_is(sql: sa.Engine, registry_uri: str) -> None:
    fields = {
        "model": "m" * 256,
        "alias": EMOJI,
        "reason": "tab\tand newline\n are stored as they are",
        "rule": "zoë → ok",
        "workspace": "w" * 63,
        "version": 2**31 - 1,
        "request_id": 2**63 - 1,
    }
    append_alone(sql, entry("zoë", details={"note": "x\x00y"}, **fields))
    [row] = stored_rows(sql)
    for column, original in {**fields, "actor": "zoë"}.items():
        assert_as_is(row, column, original)
    assert json.loads(row["details"]) == {"note": "x\x00y"}, "JSON escapes NUL itself"
    assert_verifies(sql, registry_uri)


def test_integers_out_of_range_are_stored_as_null(
    sql: sa.Engine, registry_uri: str, backend: str
) -> None:
    append_alone(sql, entry(model="fraud", version=2**40, alias_before=-(2**70), request_id=1))
    [row] = stored_rows(sql)
    unstorable = json.loads(row["details"])[UNSTORABLE]
    assert row["alias_before"] is None
    assert unstorable["alias_before"] == {
        "sha256": sha256(str(-(2**70))),
        "length": len(str(-(2**70))),
        "value": str(-(2**70)),
    }
    if backend == "sqlite":  # a 64-bit INTEGER column
        assert_as_is(row, "version", 2**40)
    else:
        assert row["version"] is None and unstorable["version"]["value"] == str(2**40)
    assert_as_is(row, "request_id", 1)
    assert_verifies(sql, registry_uri)


def test_text_over_64_kib_fits_mysql_text(sql: sa.Engine, registry_uri: str, backend: str) -> None:
    reason = "é" * 40_000  # 80,000 bytes in UTF-8
    details = {"description": "d" * 70_000}
    append_alone(sql, entry(model="fraud", reason=reason, details=details))
    [row] = stored_rows(sql)
    if backend != "mysql":
        assert_as_is(row, "reason", reason)
        assert json.loads(row["details"]) == details
    else:
        assert_safe_form(row, "reason", reason)
        assert len(row["reason"].encode("utf-8")) <= 65_535
        stored = json.loads(row["details"])
        original = json.dumps(details, sort_keys=True)
        assert stored[UNSTORABLE]["details"] == {"sha256": sha256(original), "length": 70_019}
        assert stored[UNSTORABLE]["reason"]["length"] == 40_000
        assert original.startswith(stored["details_prefix"])
        assert len(stored["details_prefix"]) > 60_000, "as much as fits is kept"
        assert len(row["details"]) <= 65_535
    assert_verifies(sql, registry_uri)


def test_several_rows_in_one_append_each_get_their_own_record(
    sql: sa.Engine, registry_uri: str
) -> None:
    append_alone(
        sql,
        entry(model="ok"),
        entry(model="bad\x00", details={"side_effect": True}),
        entry(model="also ok", details={"side_effect": True}),
    )
    rows = stored_rows(sql)
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[0]["details"] is None and rows[0]["model"] == "ok"
    assert json.loads(rows[1]["details"])["side_effect"] is True
    assert_safe_form(rows[1], "model", "bad\x00")
    assert json.loads(rows[2]["details"]) == {"side_effect": True}
    assert_verifies(sql, registry_uri)


POLICY = """\
version: 1
mode: enforce
roles:
  maintainer: ["*"]
bindings:
  - role: maintainer
    principals: ["user:alice"]
"""


def test_refusals_of_hostile_names_are_recorded_not_crashed(
    registry_uri: str,
    sql: sa.Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    as_user: Callable[[str], None],
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", str(policy))
    from mlflow_governance.entry import build_store

    store = build_store(registry_uri)
    as_user("mallory")
    attempts: list[tuple[str, Callable[[], Any]]] = [
        (LONG_NAME, lambda: store.create_registered_model(LONG_NAME)),
        ("fraud\x00", lambda: store.create_registered_model("fraud\x00")),
        (EMOJI + "\ud800", lambda: store.get_registered_model(EMOJI + "\ud800")),
    ]
    for _name, attempt in attempts:
        with pytest.raises(MlflowException) as refused:
            attempt()
        assert refused.value.error_code == "PERMISSION_DENIED"
    with (
        acting_as(Identity("mal\x00lory", SOURCE_ASSERTED)),
        pytest.raises(MlflowException) as refused,
    ):
        store.create_registered_model("fraud")
    assert refused.value.error_code == "PERMISSION_DENIED"

    rows = stored_rows(sql)
    assert [r["decision"] for r in rows] == ["deny"] * 4
    assert [r["action"] for r in rows] == [
        "create_registered_model",
        "create_registered_model",
        "read",
        "create_registered_model",
    ]
    for row, (name, _attempt) in zip(rows, attempts, strict=False):
        if row["model"] != name:  # SQLite stores a long name as is
            assert_safe_form(row, "model", name)
    assert_safe_form(rows[1], "model", "fraud\x00")
    assert_safe_form(rows[2], "model", EMOJI + "\ud800")
    assert_safe_form(rows[3], "actor", "mal\x00lory")
    as_user("alice")  # verifying the log needs audit:read, which mallory lacks
    assert_verifies(sql, registry_uri)


# ---------------------------------------------------------------------- narrower charsets


@pytest.fixture(params=["utf8mb3", "latin1"])
def narrow_mariadb(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A MariaDB registry database created with a character set narrower than utf8mb4."""
    server = SERVERS["mysql"]
    problem = server.reachable()
    if problem:
        if REQUIRE:
            pytest.fail(f"{problem} (MLFLOW_GOVERNANCE_REQUIRE_DATABASES=1)")
        pytest.skip(problem)
    charset = request.param
    name = f"govtest_{charset}_{uuid.uuid4().hex[:8]}"
    admin = server.admin_engine()
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET {charset}"))
    url = f"{server.url}/{name}"
    try:
        from mlflow_governance.store import GovernedStore

        GovernedStore(url)
        yield url, charset
    finally:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

        for key in [k for k in SqlAlchemyStore._engine_map if k.endswith(f"/{name}")]:
            SqlAlchemyStore._engine_map.pop(key).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def test_characters_a_narrow_charset_lacks_are_escaped(narrow_mariadb: tuple[str, str]) -> None:
    url, charset = narrow_mariadb
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        append_alone(engine, entry("zoë", model=EMOJI, alias="café", reason="ok \U0001f680"))
        [row] = stored_rows(engine)
        assert_as_is(row, "actor", "zoë")
        assert_as_is(row, "alias", "café")
        assert_safe_form(row, "model", EMOJI)
        assert row["model"].startswith("fraud-\\U0001f600...")
        assert_safe_form(row, "reason", "ok \U0001f680")
        assert_verifies(engine, f"governed+{url}")
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT DISTINCT character_set_name FROM information_schema.columns "
                    "WHERE table_schema = DATABASE() AND table_name = 'governance_audit_log' "
                    "AND character_set_name IS NOT NULL"
                )
            ).scalars()
            assert list(found) == [charset]
    finally:
        engine.dispose()


# ---------------------------------------------------------------------- the safe form itself

COLUMN_SHAPES = [
    ("varchar", 256, False, storable._UTF8),
    ("varchar", 32, False, storable._UTF8_BMP),
    ("varchar", 16, False, storable._ASCII),
    ("text", 300, True, storable._UTF8),
    ("text", 300, True, storable._Charset("latin1", "cp1252")),
    ("text", 300, True, storable._Charset("ucs2", "ascii", width=4)),
]

hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),
        st.sampled_from(["\x00", "\\", "\ud800", "\U0001f600", "é", "\x85"]),
    ),
    max_size=600,
)


@settings(max_examples=300, deadline=None)
@given(shape=st.sampled_from(COLUMN_SHAPES), value=hostile_text)
def test_a_safe_form_always_fits_and_is_deterministic(
    shape: tuple[str, int, bool, Any], value: str
) -> None:
    _kind, limit, in_bytes, charset = shape
    column = storable._TextColumn("model", limit, in_bytes, charset)
    if column.fits(value):
        return
    digest = sha256(value)
    safe = column.safe_form(value, digest)
    assert column.fits(safe), (shape, safe)
    assert safe == column.safe_form(value, digest)
    assert safe.endswith(f"...[sha256:{digest[:12]}]") or safe == digest[: len(safe)]


def test_the_charsets_of_both_ends_narrow_each_other() -> None:
    narrower = storable._narrower
    utf8, bmp = storable._UTF8, storable._UTF8_BMP
    latin1 = storable._mysql_charset("latin1")
    assert narrower(utf8, utf8) == utf8
    assert narrower(utf8, bmp) == narrower(bmp, utf8) == bmp
    assert narrower(latin1, utf8) == narrower(utf8, latin1) == latin1
    assert narrower(bmp, latin1) == narrower(latin1, bmp) == latin1
    other = narrower(latin1, storable._mysql_charset("koi8r"))
    assert other.codec == "ascii" and other.width == 4
