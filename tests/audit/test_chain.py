"""The hash chain as pure functions: canonical form, row hashes and walking a chain."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_governance.audit.chain import (
    CONTENT_FIELDS,
    HASHED_FIELDS,
    OPTIONAL_HASHED_FIELDS,
    UnreadableRow,
    canonical,
    format_time,
    hash_matches,
    legacy_row_hash,
    row_hash,
    verify_rows,
)
from mlflow_governance.audit.tables import GENESIS_HASH, audit_log

T0 = datetime(2026, 11, 26, 5, 39, 50, 123456)


def make_row(row_id: int, prev_hash: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": row_id,
        "time": T0 + timedelta(microseconds=row_id),
        "actor": "alice",
        "identity_source": "asserted",
        "action": "transition_model_version_stage",
        "model": "fraud",
        "version": 1,
        "stage_before": "Staging",
        "stage_after": "Production",
        "alias": None,
        "alias_before": None,
        "alias_after": None,
        "decision": "allow",
        "reason": "no policy configured",
        "rule": "default policy (audit-only)",
        "request_id": None,
        "details": json.dumps({"archive_existing_versions": False}),
        "client_address": None,
        "user_agent": None,
        "prev_hash": prev_hash,
        **fields,
    }
    row["hash"] = row_hash(row)
    return row


def make_chain(length: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for row_id in range(1, length + 1):
        rows.append(make_row(row_id, prev, actor=f"user{row_id}"))
        prev = rows[-1]["hash"]
    return rows


# ---------------------------------------------------------------------- canonical form


def test_hashed_fields_are_every_column_but_the_hash_itself() -> None:
    hashed = set(HASHED_FIELDS) | set(OPTIONAL_HASHED_FIELDS)
    assert hashed == {c.name for c in audit_log.columns} - {"hash"}
    assert len(set(HASHED_FIELDS)) == len(HASHED_FIELDS)


def test_an_optional_field_is_hashed_when_set_and_absent_when_null() -> None:
    row = make_row(1, GENESIS_HASH)
    assert "workspace" not in json.loads(canonical({**row, "workspace": None}))
    with_ws = {**row, "workspace": "team-a"}
    assert json.loads(canonical(with_ws))["workspace"] == "team-a"
    assert row_hash(with_ws) != row_hash(row)
    assert row_hash({**row, "workspace": "team-b"}) != row_hash(with_ws)


def test_canonical_is_compact_json_with_sorted_keys_and_every_hashed_field() -> None:
    row = make_row(1, GENESIS_HASH)
    text = canonical(row)
    parsed = json.loads(text)
    assert text == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert text.startswith('{"action":"transition_model_version_stage","actor":"alice",')
    assert list(parsed) == sorted(HASHED_FIELDS)
    assert parsed["time"] == "2026-11-26T05:39:50.123457Z"
    assert parsed["alias"] is None and parsed["version"] == 1


def test_canonical_ignores_the_hash_and_unknown_keys_and_fills_missing_ones() -> None:
    row = make_row(1, GENESIS_HASH)
    assert canonical({**row, "hash": "x", "note": "not hashed"}) == canonical(row)
    sparse = {"id": 1, "prev_hash": GENESIS_HASH}
    assert json.loads(canonical(sparse)) == {name: sparse.get(name) for name in HASHED_FIELDS}


def test_canonical_keeps_non_ascii_text_as_is() -> None:
    text = canonical(make_row(1, GENESIS_HASH, actor="zoë", reason="naïve → ok"))
    assert '"actor":"zoë"' in text and "naïve → ok" in text


def test_row_hash_links_prev_hash_id_and_the_content_hash() -> None:
    row = make_row(7, "ab" * 32, actor="zoë")
    content = hashlib.sha256(canonical(row, CONTENT_FIELDS).encode("utf-8")).hexdigest()
    expected = hashlib.sha256(f"{'ab' * 32}:7:{content}".encode()).hexdigest()
    assert row_hash(row) == expected
    assert "id" not in json.loads(canonical(row, CONTENT_FIELDS))
    assert "prev_hash" not in json.loads(canonical(row, CONTENT_FIELDS))


def test_rows_hashed_the_legacy_way_still_verify() -> None:
    rows = []
    prev = GENESIS_HASH
    for row_id in (1, 2, 3):
        row = make_row(row_id, prev)
        # Rows 1 and 3 as written before the linked form, row 2 as written now.
        row["hash"] = prev = legacy_row_hash(row) if row_id != 2 else row_hash(row)
        rows.append(row)
    assert verify_rows(rows).ok
    assert (
        legacy_row_hash(rows[0]) == hashlib.sha256(canonical(rows[0]).encode("utf-8")).hexdigest()
    )
    rows[2] = {**rows[2], "actor": "eve"}
    assert verify_rows(rows).broken_id == 3


def test_a_row_cannot_move_to_another_position() -> None:
    rows = make_chain(3)
    moved = {**rows[1], "id": 5}
    assert not hash_matches(moved)


# ---------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05.000000Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 6), "2026-01-02T03:04:05.000006Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 999999), "2026-01-02T03:04:05.999999Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc), "2026-01-02T03:04:05.000006Z"),
        (
            datetime(2026, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-02T03:04:05.000006Z",
        ),
        (
            datetime(2026, 1, 1, 22, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5))),
            "2026-01-02T03:04:05.000006Z",
        ),
    ],
    ids=["whole-second", "one-microsecond", "last-microsecond", "aware-utc", "utc+2", "utc-5"],
)
def test_format_time_is_utc_with_microseconds(value: datetime, text: str) -> None:
    assert format_time(value) == text


def test_naive_and_aware_times_of_one_instant_hash_the_same() -> None:
    naive = make_row(1, GENESIS_HASH, time=T0)
    aware = make_row(1, GENESIS_HASH, time=T0.replace(tzinfo=timezone.utc))
    elsewhere = make_row(
        1,
        GENESIS_HASH,
        time=T0.replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=9, minutes=30))),
    )
    assert naive["hash"] == aware["hash"] == elsewhere["hash"]


def test_one_microsecond_changes_the_hash() -> None:
    a = make_row(1, GENESIS_HASH, time=T0)
    b = make_row(1, GENESIS_HASH, time=T0 + timedelta(microseconds=1))
    assert a["hash"] != b["hash"]


def test_a_time_given_as_text_hashes_like_the_datetime_it_spells() -> None:
    # Exports carry times as text; re-hashing an exported row must give the stored hash.
    as_datetime = make_row(1, GENESIS_HASH, time=T0)
    as_text = make_row(1, GENESIS_HASH, time=format_time(T0))
    assert as_text["hash"] == as_datetime["hash"]


@given(
    st.sampled_from([f for f in HASHED_FIELDS if f not in ("id", "time")]),
    st.text(min_size=1, max_size=20),
)
def test_changing_any_hashed_field_changes_the_hash(field: str, value: str) -> None:
    row = make_row(1, GENESIS_HASH)
    if row[field] == value:
        return
    assert row_hash({**row, field: value}) != row["hash"]


# ---------------------------------------------------------------------- verify_rows


def test_an_empty_log_verifies_at_the_genesis_hash() -> None:
    result = verify_rows([])
    assert (result.ok, result.rows, result.head_id, result.head_hash) == (True, 0, 0, GENESIS_HASH)
    assert result.broken_id is None and result.problem is None


def test_a_valid_chain_verifies_with_its_count_and_head() -> None:
    rows = make_chain(5)
    result = verify_rows(iter(rows))
    assert (result.ok, result.rows, result.head_id, result.head_hash) == (
        True,
        5,
        5,
        rows[-1]["hash"],
    )
    assert rows[0]["prev_hash"] == GENESIS_HASH
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))


def test_an_edited_row_is_named() -> None:
    rows = make_chain(5)
    rows[2] = {**rows[2], "actor": "eve"}
    result = verify_rows(rows)
    assert (result.ok, result.broken_id, result.rows, result.head_id) == (False, 3, 2, 2)
    assert result.head_hash == rows[1]["hash"]
    assert result.problem == "row 3: its content does not match its hash (the row was edited)"


def test_an_edited_and_rehashed_row_breaks_the_link_of_the_next() -> None:
    rows = make_chain(5)
    forged = {**rows[2], "actor": "eve"}
    forged["hash"] = row_hash(forged)
    rows[2] = forged
    result = verify_rows(rows)
    assert (result.ok, result.broken_id) == (False, 4)
    assert result.problem is not None and result.problem.startswith(
        "row 4: its link to row 3 does not match"
    )


def test_a_deleted_row_is_named_as_a_gap() -> None:
    rows = make_chain(5)
    result = verify_rows(rows[:2] + rows[3:])
    assert (result.ok, result.broken_id, result.rows) == (False, 4, 2)
    assert result.problem == "row 4: row 3 is missing (deleted)"
    result = verify_rows(rows[:1] + rows[3:])
    assert result.problem == "row 4: rows 2..3 are missing (deleted)"


def test_a_chain_must_start_at_row_one() -> None:
    rows = make_chain(3)
    result = verify_rows(rows[1:])
    assert (result.ok, result.broken_id) == (False, 2)
    assert result.problem == "row 2: row 1 is missing (deleted)"


def test_a_wrong_genesis_link_is_found_on_the_first_row() -> None:
    row = make_row(1, "1" * 64)
    result = verify_rows([row])
    assert (result.ok, result.broken_id, result.rows) == (False, 1, 0)
    assert result.head_hash == GENESIS_HASH


def test_a_truncated_chain_is_valid_on_its_own() -> None:
    # Why checkpoints exist: cutting off the newest rows leaves a consistent chain.
    rows = make_chain(5)
    result = verify_rows(rows[:3])
    assert (result.ok, result.rows, result.head_hash) == (True, 3, rows[2]["hash"])


def test_rows_may_be_any_mapping_and_an_iterator() -> None:
    rows = make_chain(3)

    def stream() -> Any:
        yield from (tuple(row.items()) for row in rows)

    result = verify_rows(dict(items) for items in stream())
    assert result.ok and result.rows == 3


def _then_unreadable(rows: list[dict[str, Any]], row_id: int) -> Any:
    """A row source that yields ``rows``, then cannot read row ``row_id``."""
    yield from rows
    raise UnreadableRow(row_id, "its time could not be read (garbage)")


def test_an_unreadable_row_is_named_after_the_rows_before_it_are_checked() -> None:
    rows = make_chain(5)
    result = verify_rows(_then_unreadable(rows[:2], 3))
    assert (result.ok, result.broken_id, result.rows, result.head_id) == (False, 3, 2, 2)
    assert result.head_hash == rows[1]["hash"]
    assert result.problem == "row 3: its time could not be read (garbage)"


def test_a_gap_before_an_unreadable_row_is_the_first_problem() -> None:
    rows = make_chain(5)
    result = verify_rows(_then_unreadable(rows[:1], 3))
    assert (result.ok, result.broken_id, result.rows) == (False, 3, 1)
    assert result.problem == "row 3: row 2 is missing (deleted)"


def test_a_broken_row_before_an_unreadable_one_is_the_first_problem() -> None:
    rows = make_chain(5)
    rows[1] = {**rows[1], "actor": "eve"}
    result = verify_rows(_then_unreadable(rows[:2], 3))
    assert (result.ok, result.broken_id) == (False, 2)


def test_a_value_json_cannot_hold_is_reported_not_raised() -> None:
    rows = make_chain(3)
    rows[1] = {**rows[1], "reason": object()}
    result = verify_rows(rows)
    assert (result.ok, result.broken_id, result.rows) == (False, 2, 1)
    assert result.problem is not None
    assert result.problem.startswith("row 2: its content cannot be hashed")
