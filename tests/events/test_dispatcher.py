"""The dispatcher on every backend: at least once, in order per model, backoff, dead, claims.

The sinks here are recording destinations (they stand for a receiver and keep what they
got); the webhook and AWS sinks have tests of their own against real receivers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow.entities.model_registry import ModelVersionTag

from mlflow_governance.audit.outbox import list_events, retry
from mlflow_governance.audit.tables import outbox
from mlflow_governance.clock import utc_now
from mlflow_governance.events.dispatcher import Dispatcher, backoff
from mlflow_governance.events.sinks import DeliveryError


@dataclass
class Recorder:
    """A destination that keeps every envelope it accepts; it can be told to fail."""

    key: str = "recorder"
    failing: int = 0  # the next N deliveries fail
    permanent: bool = False
    models: tuple[str, ...] = ()
    got: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wants(self, event_type: str, model: str | None) -> bool:
        return not self.models or model in self.models

    def deliver(self, body: bytes, event: dict[str, Any]) -> None:
        with self.lock:
            if self.failing:
                self.failing -= 1
                raise DeliveryError("receiver down", permanent=self.permanent)
            self.got.append(json.loads(body))


class Clock:
    """A naive-UTC clock the test moves forward instead of sleeping."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def story(store: Any, as_user: Callable[[str], None]) -> Any:
    """Four events: fraud registered, transitioned, alias set; churn registered."""
    as_user("alice")
    for name in ("fraud", "churn"):
        store.create_registered_model(name)
        store.create_model_version(name, f"s3://models/{name}/1")
    store.transition_model_version_stage("fraud", 1, "Staging", False)
    store.set_registered_model_alias("fraud", "champion", 1)
    store.set_model_version_tag("churn", 1, ModelVersionTag("k", "v"))  # no event
    return store


def _states(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state))
        return {state: int(n) for state, n in rows}


def test_delivers_each_event_once_in_order(story: Any) -> None:
    sink = Recorder()
    dispatcher = Dispatcher(story.engine, lambda: [sink])
    report = dispatcher.drain()
    assert report.delivered == 4 and report.errors == []
    assert sorted(e["subject"] for e in sink.got) == ["churn/1", "fraud/1", "fraud/1", "fraud/1"]
    fraud = [e["type"] for e in sink.got if e["subject"].startswith("fraud")]
    assert fraud == ["model_version.registered", "model_version.transitioned", "alias.set"]
    for envelope in sink.got:
        assert envelope["specversion"] == "1.0" and envelope["data"]["actor"] == "alice"
    assert _states(story.engine) == {"delivered": 4}
    assert dispatcher.drain().claimed == 0


def test_a_sink_that_fails_then_recovers_gets_everything_with_the_same_ids(story: Any) -> None:
    sink = Recorder(failing=3)
    clock = Clock()
    dispatcher = Dispatcher(story.engine, lambda: [sink], clock=clock, base_delay=1.0)
    first = dispatcher.drain()
    assert first.retried >= 1 and first.dead == 0
    for _ in range(20):
        if _states(story.engine).get("pending", 0) == 0:
            break
        clock.advance(60)
        dispatcher.drain()
    assert _states(story.engine) == {"delivered": 4}
    ids = [e["id"] for e in sink.got]
    assert len(set(ids)) == 4  # every event arrived; a retry carries the same id
    with story.engine.connect() as conn:
        stored = {r["event_id"] for r in list_events(conn)}
    assert set(ids) == stored


def test_one_models_failing_event_holds_back_its_successors_only(story: Any) -> None:
    picky = Recorder(key="fraud-only", models=("fraud",), failing=1)
    clock = Clock()
    dispatcher = Dispatcher(story.engine, lambda: [picky], clock=clock)
    dispatcher.drain()
    with story.engine.connect() as conn:
        events = {(e["model"], e["type"]): e["state"] for e in list_events(conn)}
    # fraud's first event failed: the later fraud events wait behind it; churn's went.
    assert events[("fraud", "model_version.registered")] == "pending"
    assert events[("fraud", "model_version.transitioned")] == "pending"
    assert events[("churn", "model_version.registered")] == "delivered"
    clock.advance(3600)
    dispatcher.drain()
    assert [e["type"] for e in picky.got] == [
        "model_version.registered",
        "model_version.transitioned",
        "alias.set",
    ]


def test_dead_after_the_attempts_and_retried_on_demand(story: Any) -> None:
    sink = Recorder(failing=1000)
    clock = Clock()
    dispatcher = Dispatcher(story.engine, lambda: [sink], clock=clock, max_attempts=3)
    for _ in range(10):
        dispatcher.drain()
        clock.advance(3600)
    assert _states(story.engine) == {"dead": 4}
    with story.engine.connect() as conn:
        dead = list_events(conn, "dead")
    assert all(e["attempts"] == 3 and "receiver down" in e["last_error"] for e in dead)
    sink.failing = 0
    with story.engine.begin() as conn:
        assert retry(conn, clock(), dead=True) == 4
    dispatcher.drain()
    assert _states(story.engine) == {"delivered": 4}


def test_a_permanent_refusal_is_dead_at_once(story: Any) -> None:
    sink = Recorder(failing=1, permanent=True, models=("churn",))
    Dispatcher(story.engine, lambda: [sink]).drain()
    with story.engine.connect() as conn:
        churn = [e for e in list_events(conn) if e["model"] == "churn"]
    assert [e["state"] for e in churn] == ["dead"]


def test_only_missing_sinks_get_a_retry(story: Any) -> None:
    steady, flaky = Recorder(key="steady"), Recorder(key="flaky", failing=1)
    clock = Clock()
    dispatcher = Dispatcher(story.engine, lambda: [steady, flaky], clock=clock)
    dispatcher.drain()
    clock.advance(3600)
    dispatcher.drain()
    assert len(steady.got) == 4 and len(flaky.got) == 4


def test_an_expired_claim_is_taken_over(story: Any) -> None:
    """A dispatcher that died keeps its claims only for the lease."""
    clock = Clock()
    dead = Dispatcher(story.engine, lambda: [], clock=clock, worker="dead", lease=30)
    claimed = dead._claim()  # claimed, then the process "dies" before delivering
    assert len(claimed) == 2  # each model's first event
    sink = Recorder()
    alive = Dispatcher(story.engine, lambda: [sink], clock=clock, worker="alive")
    assert alive.drain().claimed == 0  # the claims still hold, and they block the rest
    clock.advance(31)
    alive.drain()
    assert _states(story.engine) == {"delivered": 4}


def test_backoff_grows_and_is_bounded() -> None:
    assert 1.0 <= backoff(1, 2.0, 600) <= 2.0
    assert 64.0 <= backoff(7, 2.0, 600) <= 128.0
    assert 300.0 <= backoff(50, 2.0, 600) <= 600.0


def test_two_dispatchers_never_hold_one_event_at_once(
    store: Any, backend: str, as_user: Callable[[str], None]
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has one writer at a time; the claim race is for server backends")
    as_user("alice")
    for i in range(12):
        store.create_registered_model(f"m{i}")
        store.create_model_version(f"m{i}", f"s3://models/m{i}/1")
    spans: list[tuple[str, str, float, float]] = []
    guard = threading.Lock()

    class Slow(Recorder):
        def deliver(self, body: bytes, event: dict[str, Any]) -> None:
            start = time.monotonic()
            threading.Event().wait(0.01)  # a receiver that takes a moment
            with guard:
                spans.append(
                    (event["event_id"], threading.current_thread().name, start, time.monotonic())
                )

    sink = Slow()
    workers = [Dispatcher(store.engine, lambda: [sink], worker=f"w{i}", batch=3) for i in range(2)]
    threads = [threading.Thread(target=w.drain, name=w.worker) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    by_event: dict[str, list[tuple[str, float, float]]] = {}
    for event_id, worker, start, end in spans:
        by_event.setdefault(event_id, []).append((worker, start, end))
    assert len(by_event) == 12
    assert all(len(deliveries) == 1 for deliveries in by_event.values()), by_event
    assert _states(store.engine) == {"delivered": 12}
