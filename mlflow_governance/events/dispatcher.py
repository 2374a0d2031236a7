"""The dispatcher: delivers outbox events at least once, in order per model, with backoff.

One pass (:meth:`Dispatcher.run_once`):

1. **Claim** a batch of due events in a short transaction. An event is due when it is
   pending, its next attempt time has come, no other dispatcher holds an unexpired claim
   on it, and no earlier event of the same model is still pending (that keeps each
   model's events in order). On PostgreSQL and MySQL the candidate rows are read with
   ``FOR UPDATE SKIP LOCKED``; on every backend the claim itself is a conditional update,
   so two dispatchers never hold one event at the same time.
2. **Deliver** each claimed event, outside any transaction, to every sink that wants it
   and does not have it yet.
3. **Settle** each event: delivered; or pending again after an exponential, jittered
   backoff; or dead once its attempts run out (or a sink refuses it for good). Only the
   dispatcher holding the claim may settle it.

A dispatcher killed mid-batch leaves its claims to expire (``lease`` seconds): the events
are then claimed again and delivered, at least once, with the same ids.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mlflow_governance.audit.outbox import event_to_dict
from mlflow_governance.audit.tables import EVENT_DEAD, EVENT_DELIVERED, EVENT_PENDING, outbox
from mlflow_governance.clock import utc_now
from mlflow_governance.events.envelope import envelope
from mlflow_governance.events.sinks.base import DeliveryError, Sink

#: Defaults: attempts before an event is dead, backoff bounds (seconds), claim lease.
MAX_ATTEMPTS = 10
BASE_DELAY = 2.0
MAX_DELAY = 600.0
LEASE = 60.0
BATCH = 50
_LOCKING_DIALECTS = ("postgresql", "mysql", "mariadb")
_ERROR_LIMIT = 2000


@dataclass
class PassReport:
    """What one pass did."""

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def backoff(attempts: int, base: float = BASE_DELAY, ceiling: float = MAX_DELAY) -> float:
    """Seconds until the next attempt after ``attempts`` failed ones: exponential, jittered.

    Full jitter between half and all of the exponential step keeps a crowd of failed
    events (a receiver that was down) from coming back all at once.
    """
    step = min(ceiling, base * (2 ** max(0, attempts - 1)))
    return random.uniform(step / 2, step)


class Dispatcher:
    """Delivers the outbox of one database to the sinks of the policy in force.

    Args:
        engine: The registry database.
        sinks: Gives the sinks to deliver to (read at every pass, so a policy change
            takes effect without a restart).
        worker: A name for this dispatcher's claims (unique per process by default).
        batch: Events claimed per pass.
        max_attempts: Failed attempts after which an event is dead.
        lease: Seconds a claim holds; a dispatcher that died loses its claims then.
        base_delay: First backoff step, in seconds.
        max_delay: Longest backoff step, in seconds.
        clock: Naive-UTC clock (replaceable in tests).
    """

    def __init__(
        self,
        engine: sa.Engine,
        sinks: Callable[[], Sequence[Sink]],
        *,
        worker: str | None = None,
        batch: int = BATCH,
        max_attempts: int = MAX_ATTEMPTS,
        lease: float = LEASE,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.sinks = sinks
        self.worker = (worker or f"dispatcher-{uuid.uuid4().hex[:12]}")[:64]
        self.batch = batch
        self.max_attempts = max_attempts
        self.lease = lease
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock

    # ------------------------------------------------------------------ one pass

    def run_once(self) -> PassReport:
        """Claim, deliver and settle one batch of due events."""
        report = PassReport()
        claimed = self._claim()
        report.claimed = len(claimed)
        if not claimed:
            return report
        sinks = list(self.sinks())
        for event in claimed:
            self._deliver(event, sinks, report)
        return report

    def drain(self, max_passes: int = 10_000) -> PassReport:
        """Run passes until nothing is due now (``events run --once``)."""
        total = PassReport()
        for _ in range(max_passes):
            report = self.run_once()
            if report.claimed == 0:
                break
            total.claimed += report.claimed
            total.delivered += report.delivered
            total.retried += report.retried
            total.dead += report.dead
            total.errors.extend(report.errors)
        return total

    def run_forever(self, stop: threading.Event, idle: float = 1.0) -> None:
        """Pass after pass until ``stop`` is set; waits ``idle`` seconds when nothing was due."""
        while not stop.is_set():
            report = self.run_once()
            if report.claimed == 0:
                stop.wait(idle)

    # ------------------------------------------------------------------ claiming

    def _claim(self) -> list[dict[str, Any]]:
        now = self.clock()
        earlier = outbox.alias("earlier")
        due = (
            sa.select(outbox.c.id)
            .where(
                outbox.c.state == EVENT_PENDING,
                outbox.c.next_attempt_at <= now,
                sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
                # Each model's events in order: none while an earlier one is pending.
                ~sa.exists(
                    sa.select(earlier.c.id).where(
                        earlier.c.state == EVENT_PENDING,
                        earlier.c.model == outbox.c.model,
                        earlier.c.id < outbox.c.id,
                    )
                ),
            )
            .order_by(outbox.c.id)
            .limit(self.batch)
        )
        until = now + timedelta(seconds=self.lease)
        with self.engine.begin() as conn:
            if conn.dialect.name in _LOCKING_DIALECTS:
                due = due.with_for_update(skip_locked=True, of=outbox)
            ids = [int(row.id) for row in conn.execute(due)]
            if not ids:
                return []
            conn.execute(
                sa.update(outbox)
                .where(
                    outbox.c.id.in_(ids),
                    outbox.c.state == EVENT_PENDING,
                    sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
                )
                .values(claimed_by=self.worker, claimed_until=until)
            )
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(outbox)
                .where(outbox.c.id.in_(ids), outbox.c.claimed_by == self.worker)
                .order_by(outbox.c.id)
            ).all()
        return [event_to_dict(row) for row in rows]

    # ------------------------------------------------------------------ delivering

    def _deliver(self, event: dict[str, Any], sinks: list[Sink], report: PassReport) -> None:
        done = set(event["delivered_to"])
        wanted = [s for s in sinks if s.wants(event["type"], event["model"])]
        body = envelope(event)
        failures: list[tuple[Sink, DeliveryError]] = []
        for sink in wanted:
            if sink.key in done:
                continue
            try:
                sink.deliver(body, event)
            except DeliveryError as exc:
                failures.append((sink, exc))
            except Exception as exc:
                failures.append((sink, DeliveryError(f"{type(exc).__name__}: {exc}")))
            else:
                done.add(sink.key)
        attempts = int(event["attempts"]) + (1 if failures else 0)
        values: dict[str, Any] = {
            "delivered_to": json.dumps(sorted(done)),
            "attempts": attempts,
            "claimed_by": None,
            "claimed_until": None,
        }
        now = self.clock()
        if not failures:
            values.update(state=EVENT_DELIVERED, delivered_at=now, last_error=None)
            report.delivered += 1
        else:
            message = "; ".join(f"{sink.key}: {exc}" for sink, exc in failures)
            values["last_error"] = message[:_ERROR_LIMIT]
            report.errors.append(f"event {event['id']} ({event['type']}): {message}")
            if attempts >= self.max_attempts or all(exc.permanent for _, exc in failures):
                values["state"] = EVENT_DEAD
                report.dead += 1
            else:
                delay = backoff(attempts, self.base_delay, self.max_delay)
                values["next_attempt_at"] = now + timedelta(seconds=delay)
                report.retried += 1
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id == event["id"], outbox.c.claimed_by == self.worker)
                .values(**values)
            )


def policy_sinks(store: Any) -> Callable[[], list[Sink]]:
    """The sinks of the policy in force on ``store``, read at every call."""
    from mlflow_governance.events.sinks import sinks_for

    def current() -> list[Sink]:
        loaded = store.policies.current()
        return sinks_for(loaded.policy.notifications) if loaded is not None else []

    return current
