"""Eight writer processes, twenty versions each, one model: no write is lost.

Issue numbers from stock MLflow on the same MariaDB, same run shape: 58 of 160 writes
succeed (the rest fail with "Giving up after 3 attempts": InnoDB's REPEATABLE READ hands
the same next version number to writers that waited on each other). The governed store
reads under READ COMMITTED after taking the model's row lock, so every writer gets a
fresh number.
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any

import pytest
import sqlalchemy as sa

from mlflow_governance.audit.query import verify

WRITERS = 8
VERSIONS = 20
START_TIMEOUT = 120
MODEL = "one-model"


def _writer(url: str, worker: int, start: Any, results: Any) -> None:
    """A spawned process: its own engine and pool, writing as soon as all are ready."""
    import logging
    import warnings

    from mlflow_governance.identity import SOURCE_ASSERTED, Identity, acting_as
    from mlflow_governance.store import GovernedStore

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    store = GovernedStore(url)
    done, failed = [], []
    with acting_as(Identity(f"writer-{worker}", SOURCE_ASSERTED)):
        start.wait(timeout=START_TIMEOUT)
        for step in range(VERSIONS):
            try:
                mv = store.create_model_version(MODEL, f"s3://models/{worker}/{step}")
                done.append(int(mv.version))
            except Exception:  # reported by the test
                failed.append(traceback.format_exc(limit=2))
    store.engine.dispose()
    results.put((done, failed))


@pytest.mark.slow
@pytest.mark.parametrize(
    "server",
    [
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_eight_writers_on_one_model_lose_nothing(db_url_for: Any, server: str) -> None:
    from mlflow_governance.store import GovernedStore

    url = db_url_for(server)
    seed = GovernedStore(url)
    seed.create_registered_model(MODEL)
    seed.engine.dispose()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WRITERS)
    results = ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(url, i, start, results)) for i in range(WRITERS)]
    for process in writers:
        process.start()
    outcomes = [results.get(timeout=600) for _ in writers]
    for process in writers:
        process.join(timeout=60)
    failures = [f for _, failed in outcomes for f in failed]
    versions = sorted(v for done, _ in outcomes for v in done)
    assert not failures, f"{len(failures)} of {WRITERS * VERSIONS} lost:\n{failures[0]}"
    assert versions == list(range(1, WRITERS * VERSIONS + 1))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            result = verify(conn)
        assert result.ok, result.problem
        assert result.rows == 1 + WRITERS * VERSIONS  # the model, then every version
    finally:
        engine.dispose()
