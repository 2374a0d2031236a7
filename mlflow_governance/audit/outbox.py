"""Writing events into the outbox (in the change's transaction) and reading them back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mlflow_governance.audit.event_catalog import event_id, events_of
from mlflow_governance.audit.tables import EVENT_DEAD as DEAD
from mlflow_governance.audit.tables import EVENT_PENDING as PENDING
from mlflow_governance.audit.tables import EVENT_STATES as STATES
from mlflow_governance.audit.tables import outbox

_INSERT = sa.insert(outbox)


def enqueue(connection: sa.Connection, rows: Sequence[dict[str, Any]], now: datetime) -> int:
    """Add the events of freshly appended audit rows, in the same transaction.

    Args:
        connection: The connection of the change's transaction.
        rows: Audit rows as appended (with ids and hashes).
        now: The time to stamp (the rows' own time).

    Returns:
        How many events were added.
    """
    values = []
    for row in rows:
        for kind, data in events_of(row):
            values.append(
                {
                    "event_id": event_id(str(row["hash"]), kind),
                    "type": kind,
                    "model": row.get("model"),
                    "version": row.get("version"),
                    "audit_id": row.get("id"),
                    "time": now,
                    "data": json.dumps(data, sort_keys=True, default=str),
                    "state": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
            )
    if values:
        # One event (the common case) as one row: a list would take the executemany path.
        connection.execute(_INSERT, values if len(values) > 1 else values[0])
    return len(values)


def event_to_dict(row: Any) -> dict[str, Any]:
    """An outbox row as ``events list --json`` and REST show it."""
    from mlflow_governance.audit.chain import format_time

    return {
        "id": int(row.id),
        "event_id": row.event_id,
        "type": row.type,
        "model": row.model,
        "version": row.version,
        "audit_id": row.audit_id,
        "time": format_time(row.time),
        "state": row.state,
        "attempts": int(row.attempts),
        "next_attempt_at": format_time(row.next_attempt_at),
        "delivered_to": json.loads(row.delivered_to) if row.delivered_to else [],
        "last_error": row.last_error,
        "delivered_at": format_time(row.delivered_at) if row.delivered_at else None,
        "data": json.loads(row.data),
    }


def list_events(
    connection: sa.Connection, state: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Events, newest first, optionally in one state."""
    query = sa.select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if state:
        if state not in STATES:
            from mlflow_governance.exceptions import InvalidRequest

            raise InvalidRequest(
                f"state={state!r} is not an event state (valid: {', '.join(STATES)})."
            )
        query = query.where(outbox.c.state == state)
    return [event_to_dict(row) for row in connection.execute(query)]


def retry(
    connection: sa.Connection, now: datetime, event: int | None = None, dead: bool = False
) -> int:
    """Make events due again: one by id, or every dead one. Returns how many."""
    query = sa.update(outbox).values(
        state=PENDING, next_attempt_at=now, claimed_by=None, claimed_until=None
    )
    if event is not None:
        query = query.where(outbox.c.id == event, outbox.c.state != PENDING)
    elif dead:
        query = query.where(outbox.c.state == DEAD)
    else:
        return 0
    return int(connection.execute(query).rowcount)
