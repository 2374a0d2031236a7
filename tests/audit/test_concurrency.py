"""Concurrent writers: the audit chain stays linear, gapless and complete.

Threads (each with its own store on the same URL) and separate OS processes write at
once; every successful write must leave exactly one audit row, ids must run 1..N without
gaps, the chain must verify, and no version number may be handed out twice.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow.entities.model_registry import ModelVersionTag

from mlflow_governance.audit.query import verify
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.identity import SOURCE_ASSERTED, Identity, acting_as

THREADS = 4
WRITES_PER_THREAD = 15
MODELS = ("conc-a", "conc-b", "conc-c")
STAGES = ("Staging", "Production", "None")
#: Seconds a worker waits for the others at the start line before the test fails.
START_TIMEOUT = 120


@dataclass
class Outcome:
    """What one writer did: its successful writes and its failures."""

    actor: str
    succeeded: list[tuple[str, str, int | None]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _store(url: str) -> Any:
    from mlflow_governance.store import GovernedStore

    return GovernedStore(url)


def _write(store: Any, kind: str, model: str, step: int, actor: str) -> int | None:
    """One governed write; returns the version it created, if any."""
    if kind == "create":
        return int(store.create_model_version(model, f"file:///conc/{model}/{step}").version)
    if kind == "tag":
        # Keys differ per writer: MLflow's own tag upsert (SELECT, then INSERT) is not
        # atomic, so two writers adding the same new key race in MLflow itself.
        store.set_model_version_tag(model, 1, ModelVersionTag(f"{actor}-{step % 4}", str(step)))
    else:
        store.transition_model_version_stage(model, 1, STAGES[step % len(STAGES)], False)
    return None


def _plan(worker: int, count: int) -> list[tuple[str, str]]:
    """The writes of one worker: creates, tags and transitions spread over the models."""
    kinds = ("create", "tag", "transition")
    return [(kinds[i % 3], MODELS[(worker + i) % len(MODELS)]) for i in range(count)]


def _run_writer(store: Any, worker: int, count: int, start: Any) -> Outcome:
    outcome = Outcome(actor=f"writer-{worker}")
    plan = _plan(worker, count)
    with acting_as(Identity(outcome.actor, SOURCE_ASSERTED)):
        start.wait(timeout=START_TIMEOUT)
        for step, (kind, model) in enumerate(plan):
            try:
                version = _write(store, kind, model, step, outcome.actor)
            except Exception:  # recorded and asserted on by the test
                outcome.failed.append(traceback.format_exc(limit=3))
            else:
                outcome.succeeded.append((kind, model, version))
    return outcome


def _seed(url: str) -> int:
    """Create the models and their version 1; returns the audit rows written so far."""
    store = _store(url)
    for model in MODELS:
        store.create_registered_model(model)
        store.create_model_version(model, f"file:///conc/{model}/seed")
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one())


def _check(url: str, seeded: int, outcomes: list[Outcome]) -> None:
    """The invariants every concurrent run must keep."""
    failures = [failure for outcome in outcomes for failure in outcome.failed]
    assert not failures, "writes failed under concurrency:\n" + "\n".join(failures)
    store = _store(url)
    with store.engine.connect() as conn:
        result = verify(conn)
        ids = list(conn.execute(sa.select(audit_log.c.id).order_by(audit_log.c.id)).scalars())
        per_actor = Counter(
            conn.execute(sa.select(audit_log.c.actor).where(audit_log.c.id > seeded)).scalars()
        )
        created_rows = conn.execute(
            sa.select(audit_log.c.model, audit_log.c.version).where(
                audit_log.c.action == "create_model_version", audit_log.c.id > seeded
            )
        ).all()
    assert result.ok, result.problem
    successes = sum(len(outcome.succeeded) for outcome in outcomes)
    assert ids == list(range(1, seeded + successes + 1))
    assert result.rows == len(ids)
    assert per_actor == {o.actor: len(o.succeeded) for o in outcomes if o.succeeded}

    created = [(m, v) for o in outcomes for kind, m, v in o.succeeded if kind == "create"]
    assert len(set(created)) == len(created), "a version number was handed out twice"
    assert sorted(created) == sorted((row.model, row.version) for row in created_rows)
    for model in MODELS:
        versions = sorted(
            int(mv.version) for mv in store.search_model_versions(f"name = '{model}'")
        )
        expected = 1 + sum(1 for m, _ in created if m == model)
        assert versions == list(range(1, expected + 1))


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_threads_writing_at_once_keep_one_linear_chain(db_url_for, backend: str) -> None:
    url = db_url_for(backend)
    seeded = _seed(url)
    stores = [_store(url) for _ in range(THREADS)]
    start = threading.Barrier(THREADS)
    outcomes: list[Outcome | None] = [None] * THREADS

    def work(worker: int) -> None:
        outcomes[worker] = _run_writer(stores[worker], worker, WRITES_PER_THREAD, start)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=START_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a writer thread hung"
    assert all(outcome is not None for outcome in outcomes), "a writer thread crashed"
    _check(url, seeded, [outcome for outcome in outcomes if outcome is not None])


def _process_writer(url: str, worker: int, count: int, start: Any, results: Any) -> None:
    """Entry point of the writer process (spawned, so it imports this module afresh)."""
    import warnings

    warnings.filterwarnings("ignore", message="mlflow-governance: no policy configured")
    try:
        outcome = _run_writer(_store(url), worker, count, start)
    except BaseException:  # the parent must hear about it rather than wait forever
        outcome = Outcome(actor=f"writer-{worker}", failed=[traceback.format_exc()])
    results.put(outcome)


@pytest.mark.postgres
@pytest.mark.slow
def test_processes_writing_at_once_keep_one_linear_chain(db_url_for) -> None:
    # Two OS processes, each with its own engine and pool: a spawned child and this one.
    # The child starts first so that its imports overlap the seeding; the barrier holds
    # both writers until the seed is in.
    url = db_url_for("postgresql")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    results = ctx.Queue()
    count = 2 * WRITES_PER_THREAD
    child = ctx.Process(target=_process_writer, args=(url, 1, count, start, results))
    child.start()
    try:
        seeded = _seed(url)
        mine = _run_writer(_store(url), 0, count, start)
        theirs = results.get(timeout=START_TIMEOUT)
    finally:
        child.join(timeout=START_TIMEOUT)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    _check(url, seeded, [mine, theirs])
