"""Governance events: listing the outbox, retrying, and one dispatcher pass."""

from __future__ import annotations

from typing import Any

from mlflow_governance.application._core import ServiceCore
from mlflow_governance.exceptions import InvalidRequest, NotFound
from mlflow_governance.identity import Identity
from mlflow_governance.inputs import parse_id, parse_int

#: Upper bound on events one listing returns.
MAX_EVENTS = 5000


class EventActions(ServiceCore):
    """``events list``, ``events retry`` and ``events run --once``."""

    def events_list(
        self, identity: Identity, state: Any = None, limit: Any = None
    ) -> list[dict[str, Any]]:
        """Outbox events, newest first (needs ``audit:read`` on every model: events
        describe every model's changes and refusals)."""
        from mlflow_governance.audit.outbox import list_events

        self.require(identity, "audit:read", None, "list_events")
        count = parse_int(limit, "limit", minimum=1) if limit not in (None, "") else 100
        with self.store.engine.connect() as conn:
            return list_events(conn, state or None, min(count, MAX_EVENTS))

    def events_retry(
        self, identity: Identity, event: Any = None, dead: Any = False
    ) -> dict[str, Any]:
        """Make one event (by id) or every dead event due again (needs ``policy:admin``).

        Returns:
            ``{"retried": N}``.
        """
        from mlflow_governance.audit.outbox import retry
        from mlflow_governance.clock import utc_now

        self.require(identity, "policy:admin", None, "retry_events")
        if (event in (None, "")) == (not dead):
            raise InvalidRequest("Give exactly one of an event id and dead=true.")
        number = parse_id(event, "event") if event not in (None, "") else None
        with self.store.engine.begin() as conn:
            count = retry(conn, utc_now(), event=number, dead=bool(dead))
        if number is not None and count == 0:
            raise NotFound(
                f"No delivered or dead event #{number} to retry (it does not exist, or it "
                "is pending already): see 'mlflow-governance events list'."
            )
        return {"retried": count}
