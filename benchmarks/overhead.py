"""Measure what governance adds to registry calls: stock MLflow store vs the governed store.

Both stores are built on the same database URL, so they share MLflow's cached engine (and
its connection pool); each works on a registered model of its own. Every measured call is
made on both stores back to back, in alternating order, so that drift (a growing table, a
warming cache, a busy disk) hits both sides equally. The table reports medians per
operation and checks them against the project's bar: writes at most 1.15x, reads at most
1.05x the stock latency.

Usage::

    .venv/bin/python benchmarks/overhead.py                      # temporary SQLite file
    .venv/bin/python benchmarks/overhead.py --db postgresql+psycopg://postgres@127.0.0.1:5432
    .venv/bin/python benchmarks/overhead.py --db mysql+pymysql://root@127.0.0.1:3306 --check

A server URL without a database name makes the script create a scratch database and drop
it afterwards; a URL with a database name is used as given (the plugin's tables are
created if missing, and the benchmark's models are deleted at the end).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

WRITE_BAR = 1.15
READ_BAR = 1.05
BENCH_USER = "bench"

#: The policy the governed store evaluates by default: enforce mode, one binding that
#: grants the benchmark user everything, so every call takes the full decision path, and
#: a Production gate covering the benchmark's models (``--no-gate`` leaves it out), so
#: every transition is decided against the gate on the model's locked row.
BENCH_POLICY = f"""\
version: 1
mode: enforce
groups:
  benchers: [{BENCH_USER}]
roles:
  admin: ["*"]
bindings:
  - role: admin
    principals: ["group:benchers"]
    models: ["bench-*"]
"""

BENCH_GATE = """\
gates:
  production:
    models: ["bench-*"]
    targets: {stages: [Production]}
    approvals: {required: 1}
    break_glass_roles: [admin]
"""

#: Stages each round moves its version to. With the gate in place the benchmark stays
#: out of Production (moving there would be a break-glass move with a review request),
#: so both stores make the same, ungated transitions while the gate covers the model.
STAGES = ("Staging", "Production", "Archived")
GATED_STAGES = ("Staging", "Archived", "None")

#: One line of the table: operation, stock ms, governed ms, ratio, bar, passed.
Row = tuple[str, float, float, float, float, bool]

WRITES = ("create_model_version", "transition_model_version_stage", "set_model_version_tag")
READS = ("get_model_version", "get_latest_versions", "search_model_versions")


@dataclass
class Samples:
    """Latencies of one operation on both stores, in seconds."""

    stock: list[float] = field(default_factory=list)
    governed: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Side:
    """One store and the registered model it works on."""

    label: str
    store: Any
    model: str


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-operation latency of the governed registry store vs MLflow's own."
    )
    parser.add_argument(
        "--db",
        help="SQLAlchemy URL (default: a temporary SQLite file). A server URL without a "
        "database name gets a scratch database, dropped afterwards.",
    )
    parser.add_argument(
        "--iterations", type=int, default=200, help="measured rounds per operation (default 200)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="unmeasured rounds first (default 20)"
    )
    parser.add_argument(
        "--policy",
        help="policy YAML for the governed store (default: an enforce policy granting the "
        "benchmark user everything)",
    )
    parser.add_argument(
        "--default-policy",
        action="store_true",
        help="run the governed store on the built-in audit-only default (no policy file)",
    )
    parser.add_argument(
        "--no-gate",
        action="store_true",
        help="leave the Production gate out of the built-in policy",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when an operation misses its bar"
    )
    args = parser.parse_args(argv)
    if args.policy and args.default_policy:
        parser.error("--policy and --default-policy are mutually exclusive: pick one")
    if args.iterations < 1 or args.warmup < 0:
        parser.error("--iterations must be >= 1 and --warmup >= 0")
    return args


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    """Yield the URL to benchmark on, creating and dropping scratch databases as needed."""
    if url is None:
        with tempfile.TemporaryDirectory(prefix="govbench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'registry.db'}"
        return
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" or parsed.database:
        yield url
        return
    name = f"govbench_{uuid.uuid4().hex[:8]}"
    admin_db = "postgres" if parsed.get_backend_name() == "postgresql" else "mysql"
    admin = sa.create_engine(
        parsed.set(database=admin_db), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

        for key in [k for k in SqlAlchemyStore._engine_map if k.endswith(f"/{name}")]:
            SqlAlchemyStore._engine_map.pop(key).dispose()
        force = " WITH (FORCE)" if parsed.get_backend_name() == "postgresql" else ""
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


def _configure_policy(args: argparse.Namespace, workdir: Path) -> str:
    """Point the governed store at the policy to evaluate; returns a label for the report."""
    os.environ.pop("MLFLOW_GOVERNANCE_POLICY", None)
    if args.default_policy:
        # The store warns once that nothing is enforced; that is expected here.
        warnings.filterwarnings("ignore", message="mlflow-governance: no policy configured")
        return "built-in audit-only default"
    path = Path(args.policy) if args.policy else workdir / "bench-policy.yaml"
    if not args.policy:
        path.write_text(BENCH_POLICY + ("" if args.no_gate else BENCH_GATE))
    os.environ["MLFLOW_GOVERNANCE_POLICY"] = str(path)
    if args.policy:
        return str(args.policy)
    gate = "" if args.no_gate else ", a Production gate on the models"
    return f"enforce, one admin binding{gate} (built in)"


class Bench:
    """Runs the operations on both stores, interleaved, and collects latencies."""

    def __init__(self, stock: Side, governed: Side, stages: tuple[str, ...] = STAGES) -> None:
        self.sides = (stock, governed)
        self.stages = stages
        self.samples: dict[str, Samples] = {op: Samples() for op in WRITES + READS}
        self._round = 0

    def _pair(self, op: str, call: Callable[[Side], Any], record: bool) -> tuple[Any, Any]:
        # Alternate who goes first, so neither side always runs on a warmer cache.
        order = self.sides if self._round % 2 == 0 else self.sides[::-1]
        results: dict[str, Any] = {}
        for side in order:
            start = time.perf_counter()
            results[side.label] = call(side)
            elapsed = time.perf_counter() - start
            if record:
                getattr(self.samples[op], side.label).append(elapsed)
        return results["stock"], results["governed"]

    def round(self, record: bool) -> None:
        """One version per side: create, transition, tag, then the three reads."""
        from mlflow.entities.model_registry import ModelVersionTag

        self._round += 1
        stage = self.stages[self._round % len(self.stages)]
        created = self._pair(
            "create_model_version",
            lambda s: s.store.create_model_version(s.model, f"file:///bench/{s.model}"),
            record,
        )
        version = {"stock": created[0].version, "governed": created[1].version}
        self._pair(
            "transition_model_version_stage",
            lambda s: s.store.transition_model_version_stage(
                s.model, version[s.label], stage, False
            ),
            record,
        )
        self._pair(
            "set_model_version_tag",
            lambda s: s.store.set_model_version_tag(
                s.model, version[s.label], ModelVersionTag("round", str(self._round))
            ),
            record,
        )
        self._pair(
            "get_model_version",
            lambda s: s.store.get_model_version(s.model, version[s.label]),
            record,
        )
        self._pair("get_latest_versions", lambda s: s.store.get_latest_versions(s.model), record)
        self._pair(
            "search_model_versions",
            lambda s: s.store.search_model_versions(f"name = '{s.model}'", max_results=50),
            record,
        )


def _report(samples: dict[str, Samples]) -> list[Row]:
    rows = []
    for op, data in samples.items():
        stock = statistics.median(data.stock) * 1000
        governed = statistics.median(data.governed) * 1000
        ratio = governed / stock
        bar = WRITE_BAR if op in WRITES else READ_BAR
        rows.append((op, stock, governed, ratio, bar, ratio <= bar))
    return rows


def _print_table(rows: list[Row]) -> None:
    header = ("operation", "stock ms", "governed ms", "ratio", "bar", "result")
    print(
        f"{header[0]:<32} {header[1]:>10} {header[2]:>12} {header[3]:>7} {header[4]:>7}  "
        f"{header[5]}"
    )
    print("-" * 80)
    for op, stock, governed, ratio, bar, ok in rows:
        print(
            f"{op:<32} {stock:>10.3f} {governed:>12.3f} {ratio:>6.2f}x {bar:>6.2f}x  "
            f"{'PASS' if ok else 'FAIL'}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 1 with ``--check`` when an operation misses its bar.
    """
    args = _parse_args(argv)
    os.environ["MLFLOW_TRACKING_USERNAME"] = BENCH_USER
    with tempfile.TemporaryDirectory(prefix="govbench-policy-") as tmp:
        policy_label = _configure_policy(args, Path(tmp))
        with _database(args.db) as url:
            rows, elapsed = _run(url, args)
            shown = sa.make_url(url).render_as_string(hide_password=True)
    print(f"database:   {shown}")
    print(f"policy:     {policy_label}")
    print(
        f"rounds:     {args.iterations} measured ({elapsed:.1f} s) after {args.warmup} "
        "warm-up; medians, stock and governed interleaved"
    )
    print()
    _print_table(rows)
    failed = [row[0] for row in rows if not row[5]]
    if failed:
        print(f"\nabove the bar: {', '.join(failed)}")
    return 1 if failed and args.check else 0


def _run(url: str, args: argparse.Namespace) -> tuple[list[Row], float]:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    from mlflow_governance.store import GovernedStore

    # MLflow and Alembic announce table creation at INFO (MLflow sets its level on
    # import, hence here); the report is the table.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    suffix = uuid.uuid4().hex[:6]
    stock_store = SqlAlchemyStore(url)
    governed_store = GovernedStore(url)
    # MLflow caches engines by URL: both stores must share one pool, or the comparison
    # would include connection setup on one side only.
    assert stock_store.engine is governed_store.engine, "both stores must share one engine"
    stock = Side("stock", stock_store, f"bench-stock-{suffix}")
    governed = Side("governed", governed_store, f"bench-governed-{suffix}")
    stock_store.create_registered_model(stock.model)
    governed_store.create_registered_model(governed.model)
    gated = not (args.no_gate or args.policy or args.default_policy)
    bench = Bench(stock, governed, GATED_STAGES if gated else STAGES)
    try:
        for _ in range(args.warmup):
            bench.round(record=False)
        gc.collect()
        gc.freeze()  # keep collections of the setup's objects out of the measured calls
        start = time.perf_counter()
        for _ in range(args.iterations):
            bench.round(record=True)
        elapsed = time.perf_counter() - start
    finally:
        gc.unfreeze()
        stock_store.delete_registered_model(stock.model)
        governed_store.delete_registered_model(governed.model)
    return _report(bench.samples), elapsed


if __name__ == "__main__":
    sys.exit(main())
