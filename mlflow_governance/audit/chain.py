"""The hash chain over audit rows.

A row's hash links three things: the previous row's hash, the row's position (``id``) and
the SHA-256 of a canonical JSON serialisation of its content::

    hash = sha256(f"{prev_hash}:{id}:{sha256(canonical content)}")

The content hash is computed by the writer; the link can be computed by the database in
the statement that moves the chain head (PostgreSQL), so a governed write appends its row
in one round trip. Editing a row breaks its own hash; deleting a row breaks the link of
the row after it (and leaves a gap in the ids). Cutting off the newest rows leaves a valid
but shorter chain: only a checkpoint kept elsewhere (``audit checkpoint``) reveals that.

Rows written before this form existed hash the whole row, ``id`` and ``prev_hash``
included, in one canonical JSON (:func:`legacy_row_hash`); they keep their hashes, and
verification accepts either form, each of which commits to the same fields.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mlflow_governance.audit.tables import GENESIS_HASH

# The order is fixed by ``sort_keys``; the list says which columns are covered.
HASHED_FIELDS = (
    "id",
    "time",
    "actor",
    "identity_source",
    "action",
    "model",
    "version",
    "stage_before",
    "stage_after",
    "alias",
    "alias_before",
    "alias_after",
    "decision",
    "reason",
    "rule",
    "request_id",
    "details",
    "client_address",
    "user_agent",
    "prev_hash",
)


#: What the content hash covers: every hashed field but the row's position in the chain,
#: which the link adds.
CONTENT_FIELDS = tuple(name for name in HASHED_FIELDS if name not in ("id", "prev_hash"))

#: Columns added after the first release: hashed when set, left out of the payload when
#: NULL, so rows written before they existed keep their hashes.
OPTIONAL_HASHED_FIELDS = ("workspace",)


def format_time(value: datetime) -> str:
    """Render a timestamp as UTC ISO-8601 with microseconds, the form that is hashed.

    Args:
        value: An aware datetime, or a naive one taken to be UTC (as databases return it).

    Returns:
        E.g. ``2026-11-26T05:39:50.123456Z``.
    """
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    # The same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ") for the years a row can hold,
    # at a third of the cost: verification renders a million of these.
    return value.isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """Parse ISO-8601 as users type it: ``Z`` or an offset allowed, naive means UTC.

    Args:
        text: E.g. ``2026-11-01T12:00:00Z``, ``2026-11-01T13:00+01:00`` or ``2026-11-01``.

    Returns:
        An aware datetime.

    Raises:
        ValueError: Not an ISO-8601 time.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def canonical(row: Mapping[str, Any], fields: tuple[str, ...] = HASHED_FIELDS) -> str:
    """Serialise the hashed fields of a row canonically.

    Args:
        row: A mapping with at least the keys of ``fields``.
        fields: Which fields: all of :data:`HASHED_FIELDS` (the legacy form) or
            :data:`CONTENT_FIELDS`.

    Returns:
        Compact JSON with sorted keys.
    """
    # Setting or clearing an optional field later breaks the row's hash either way.
    present = tuple(name for name in OPTIONAL_HASHED_FIELDS if row.get(name) is not None)
    payload: dict[str, Any] = {}
    # Filled in sorted key order, so the encoder need not sort: the same text as
    # json.dumps(..., sort_keys=True) with these separators, made faster.
    for name in _sorted_fields(fields, present):
        value = row.get(name)
        if isinstance(value, datetime):
            value = format_time(value)
        payload[name] = value
    return _ENCODER.encode(payload)


def _sorted_fields(fields: tuple[str, ...], present: tuple[str, ...]) -> tuple[str, ...]:
    return _SORTED.get((fields, present)) or tuple(sorted((*fields, *present)))


#: Stateless once built (its options are fixed), and costly to build for every row.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_SORTED: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {
    (fields, present): tuple(sorted((*fields, *present)))
    for fields in (HASHED_FIELDS, CONTENT_FIELDS)
    for present in ((), OPTIONAL_HASHED_FIELDS)
}


def content_hash(row: Mapping[str, Any]) -> str:
    """The SHA-256 of a row's content: every hashed field but ``id`` and ``prev_hash``."""
    return hashlib.sha256(canonical(row, CONTENT_FIELDS).encode("utf-8")).hexdigest()


def link_hash(prev_hash: str, row_id: int, content: str) -> str:
    """Chain a content hash after ``prev_hash`` at position ``row_id``.

    The databases compute the same value in SQL (see ``audit/writer.py``): the text
    ``{prev_hash}:{row_id}:{content}`` in UTF-8, hashed, as lowercase hex.
    """
    return hashlib.sha256(f"{prev_hash}:{int(row_id)}:{content}".encode()).hexdigest()


def row_hash(row: Mapping[str, Any]) -> str:
    """Compute a row's chained hash, as rows are written now.

    Args:
        row: The row's fields including ``id`` and ``prev_hash``.

    Returns:
        The hex SHA-256 digest.
    """
    return link_hash(row["prev_hash"], row["id"], content_hash(row))


def legacy_row_hash(row: Mapping[str, Any]) -> str:
    """The hash of a row written before the linked form: the whole row in one JSON."""
    return hashlib.sha256(canonical(row).encode("utf-8")).hexdigest()


def hash_matches(row: Mapping[str, Any]) -> bool:
    """Whether a stored row's ``hash`` is the hash of its fields, in either form."""
    stored = row["hash"]
    return bool(row_hash(row) == stored or legacy_row_hash(row) == stored)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of walking the chain.

    Attributes:
        ok: True when every row checks out.
        rows: How many rows were checked.
        head_id: The id of the last row read (0 for an empty log).
        head_hash: Its hash (the genesis hash for an empty log).
        broken_id: The first row found broken, if any.
        problem: What is wrong with it.
    """

    ok: bool
    rows: int
    head_id: int
    head_hash: str
    broken_id: int | None = None
    problem: str | None = None


class UnreadableRow(Exception):
    """Raised by a row source when a stored row cannot be read back as an audit row.

    Someone edited it behind the plugin's back into something its column types do not
    allow (a ``time`` of ``garbage`` on SQLite, ``infinity`` on PostgreSQL, a zero date on
    MariaDB). :func:`verify_rows` turns it into a broken chain at that row, so one bad row
    is reported like any other tampering instead of ending the walk with a traceback.

    Attributes:
        row_id: The id of the row.
        what: What could not be read, e.g. ``its time could not be read (...)``.
    """

    def __init__(self, row_id: int, what: str) -> None:
        super().__init__(f"row {row_id}: {what}")
        self.row_id = row_id
        self.what = what


def verify_rows(
    rows: Iterable[Mapping[str, Any]], *, first_id: int = 1, prev_hash: str = GENESIS_HASH
) -> VerifyResult:
    """Walk rows in id order and check ids, links and hashes.

    Args:
        rows: Audit rows ordered by id, as mappings. The source may raise
            :class:`UnreadableRow` for a row it cannot read; the walk stops there.
        first_id: The id the first row must have: 1, or the row after a retention cut.
        prev_hash: What the first row must link to: the genesis hash, or the hash of the
            last row retention archived (its anchor).

    Returns:
        The first problem found, or success with the row count and chain head.
    """
    expected_prev = prev_hash
    expected_id = first_id
    count = 0

    def broken(row_id: int, problem: str) -> VerifyResult:
        return VerifyResult(False, count, expected_id - 1, expected_prev, row_id, problem)

    source = iter(rows)
    while True:
        try:
            row = next(source, None)
        except UnreadableRow as exc:
            # Rows missing before it are the first problem, as they would be for a row
            # that could be read.
            if exc.row_id > expected_id:
                return broken(exc.row_id, _missing(expected_id, exc.row_id))
            return broken(exc.row_id, f"row {exc.row_id}: {exc.what}")
        if row is None:
            return VerifyResult(True, count, expected_id - 1, expected_prev)
        row_id = int(row["id"])
        if row_id != expected_id:
            return broken(row_id, _missing(expected_id, row_id))
        if row["prev_hash"] != expected_prev:
            return broken(
                row_id,
                f"row {row_id}: its link to row {row_id - 1} does not match "
                "(the row before it was edited or deleted)",
            )
        try:
            matches = hash_matches(row)
        except (TypeError, ValueError) as exc:  # a value JSON cannot represent
            return broken(row_id, f"row {row_id}: its content cannot be hashed ({exc})")
        if not matches:
            return broken(
                row_id,
                f"row {row_id}: its content does not match its hash (the row was edited)",
            )
        expected_prev = row["hash"]
        expected_id += 1
        count += 1


def _missing(expected_id: int, row_id: int) -> str:
    if row_id == expected_id + 1:
        return f"row {row_id}: row {expected_id} is missing (deleted)"
    return f"row {row_id}: rows {expected_id}..{row_id - 1} are missing (deleted)"
