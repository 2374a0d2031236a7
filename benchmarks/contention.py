"""Many writers at once: stock MLflow store vs the governed store, same database, same run.

Eight spawned processes (each with its own engine and pool) wait on one barrier, then each
creates twenty model versions, either all on **one** registered model (they queue on that
model's row) or each on a model of its own. The script reports the wall time from the
barrier to the last writer done, how many of the writes succeeded, and the ratio of
governed to stock. Scenarios alternate stock/governed and repeat, and the table shows
medians, so a busy disk or a warming cache hits both sides.

The governed store runs under the same enforcing policy as ``overhead.py`` (one admin
binding and a Production gate on the benchmark's models), so every write takes the full
decision path and writes its audit row.

Usage::

    .venv/bin/python benchmarks/contention.py --db postgresql+psycopg://postgres@127.0.0.1:5432
    .venv/bin/python benchmarks/contention.py --db mysql+pymysql://root@127.0.0.1:3306
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import BENCH_GATE, BENCH_POLICY, BENCH_USER, _database

START_TIMEOUT = 300


def _writer(kind: str, url: str, model: str, count: int, start: Any, results: Any) -> None:
    """One spawned writer: build its store, wait for the others, write, report."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    if kind == "governed":
        from mlflow_governance.store import GovernedStore

        store: Any = GovernedStore(url)
    else:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(url)
    ok = failed = 0
    last_error = ""
    start.wait(timeout=START_TIMEOUT)
    began = time.time()
    for step in range(count):
        try:
            store.create_model_version(model, f"file:///bench/{model}/{step}")
            ok += 1
        except Exception as exc:  # counted and shown: a lost write is a result here
            failed += 1
            last_error = str(exc).splitlines()[0][:160]
    results.put((began, time.time(), ok, failed, last_error))
    store.engine.dispose()


def _scenario(kind: str, url: str, models: list[str], count: int) -> tuple[float, int, str]:
    """Run one scenario; returns (wall seconds, successful writes, an error if any)."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(models))
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(kind, url, model, count, start, results))
        for model in models
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    began = min(o[0] for o in outcomes)
    ended = max(o[1] for o in outcomes)
    errors = [o[4] for o in outcomes if o[4]]
    return ended - began, sum(o[2] for o in outcomes), errors[0] if errors else ""


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="PostgreSQL or MySQL server URL")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--versions", type=int, default=20, help="per writer")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ["MLFLOW_TRACKING_USERNAME"] = BENCH_USER
    with tempfile.TemporaryDirectory(prefix="govbench-contention-") as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(BENCH_POLICY + BENCH_GATE)
        os.environ["MLFLOW_GOVERNANCE_POLICY"] = str(policy)
        with _database(args.db) as url:
            from mlflow_governance.store import GovernedStore

            GovernedStore(url).engine.dispose()  # create both schemas once, up front
            rows = _run(url, args)
    total = args.writers * args.versions
    print(f"{args.writers} writers x {args.versions} versions, medians of {args.repeat} runs")
    print(
        f"{'scenario':<16} {'stock s':>9} {'governed s':>11} {'ratio':>7} {'stock ok':>9} "
        f"{'governed ok':>12}"
    )
    for name, stock, governed in rows:
        ratio = statistics.median(governed[0]) / statistics.median(stock[0])
        stock_s, governed_s = statistics.median(stock[0]), statistics.median(governed[0])
        print(
            f"{name:<16} {stock_s:>9.2f} {governed_s:>11.2f} {ratio:>6.2f}x"
            f" {min(stock[1]):>5}/{total} {min(governed[1]):>8}/{total}"
        )
        for kind, data in (("stock", stock), ("governed", governed)):
            if data[2]:
                print(f"  {kind} error: {data[2]}")
    return 0


def _run(url: str, args: argparse.Namespace) -> list[tuple[str, Any, Any]]:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    setup = SqlAlchemyStore(url)
    table: list[tuple[str, Any, Any]] = []
    for scenario in ("one model", "one model each"):
        sides: dict[str, tuple[list[float], list[int], str]] = {
            "stock": ([], [], ""),
            "governed": ([], [], ""),
        }
        for rep in range(args.repeat):
            order = ("stock", "governed") if rep % 2 == 0 else ("governed", "stock")
            for kind in order:
                tag = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
                if scenario == "one model":
                    models = [tag] * args.writers
                    setup.create_registered_model(tag)
                else:
                    models = [f"{tag}-{i}" for i in range(args.writers)]
                    for model in models:
                        setup.create_registered_model(model)
                wall, ok, error = _scenario(kind, url, models, args.versions)
                walls, oks, _ = sides[kind]
                walls.append(wall)
                oks.append(ok)
                sides[kind] = (walls, oks, error or sides[kind][2])
        table.append((scenario, sides["stock"], sides["governed"]))
    setup.engine.dispose()
    return table


if __name__ == "__main__":
    sys.exit(main())
