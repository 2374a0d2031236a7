"""At scale: the audit log, history, governed search and verification on a big registry.

Builds, in a scratch database it creates and drops, a registry of 100,000 model versions
across 1,000 models with 1,000,000 chained audit rows (see ``scale_data.py``: loaded in
bulk, chained by the plugin's own append path), then measures, against the bars of the
project's scale goals:

- ``audit list --model M --limit 50``: under 50 ms (the CLI's code path in process:
  ``LocalAccess.audit_list``), on the busiest model and on a typical one;
- ``history M --at T``: under 100 ms, the same way;
- search with read filtering: ``search_registered_models`` and ``search_model_versions``
  through the governed store, for a user who may read a fifth of the models under an
  enforcing policy, at most 1.5x MLflow's own store searching everything, interleaved in
  the same process on the same engine; every governed page must be full and readable;
- ``audit verify`` over the whole log: under 30 s, run as the real command in a child
  process whose peak RSS is read from the kernel (``wait4``), once when the log holds
  100,000 rows and once at 1,000,000: the two peaks show whether memory stays flat.

Usage::

    .venv/bin/python benchmarks/scale.py                       # PostgreSQL, full size
    .venv/bin/python benchmarks/scale.py --versions 10000 --audit-rows 100000
    .venv/bin/python benchmarks/scale.py --db sqlite
    .venv/bin/python benchmarks/scale.py --db mysql+pymysql://root@127.0.0.1:3306

A server URL without a database name gets a scratch database, dropped at the end
(``--keep`` keeps it and prints its URL).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from scale_data import READER_GLOBS, Plan, load_audit, load_registry
from scale_measure import (
    AUDITOR,
    READER,
    Line,
    Verified,
    explain,
    measure_audit_reads,
    measure_search,
    middle_time,
    models_to_read,
    verify_in_child,
    verify_lines,
)

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432"
POLICY = f"""\
version: 1
mode: enforce
groups:
  data-science: [{", ".join(f"ds-{n:03d}" for n in range(3))}]
  release-managers: [{", ".join(f"rm-{n}" for n in range(5))}]
roles:
  admin: ["*"]
  auditor: [read, "audit:read"]
  contributor: [read, register, edit, "transition:Staging", "alias:challenger"]
  release-manager: [read, "transition:*", "alias:*", "approve:production"]
  viewer: [read]
bindings:
  - role: admin
    principals: ["user:bench-admin"]
  - role: contributor
    principals: ["group:data-science", "user:svc-train"]
  - role: release-manager
    principals: ["group:release-managers"]
  - role: viewer
    principals: ["user:{READER}"]
    models: [{", ".join(f'"{g}"' for g in READER_GLOBS)}]
  - role: auditor
    principals: ["user:{AUDITOR}"]
gates:
  production:
    targets: {{stages: [Production], aliases: [champion]}}
    approvals: {{required: 2, approver_roles: [release-manager]}}
    break_glass_roles: [admin]
"""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"SQLAlchemy URL, or 'sqlite' for a temporary file (default {DEFAULT_DB}). A "
        "server URL without a database name gets a scratch database, dropped afterwards.",
    )
    parser.add_argument("--models", type=int, default=1000, help="registered models (1000)")
    parser.add_argument("--versions", type=int, default=100_000, help="model versions (100000)")
    parser.add_argument("--audit-rows", type=int, default=1_000_000, help="audit rows (1000000)")
    parser.add_argument(
        "--small-audit-rows",
        type=int,
        default=100_000,
        help="also verify when the log holds this many rows, to compare peak memory "
        "(100000; 0 to skip)",
    )
    parser.add_argument(
        "--repeats", type=int, default=30, help="measured calls per read measurement (30)"
    )
    parser.add_argument("--seed", type=int, default=10, help="seed of the generated history")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print the query plans of the audit list and history statements (PostgreSQL)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a bar is missed")
    args = parser.parse_args(argv)
    if not 0 <= args.small_audit_rows < args.audit_rows:
        parser.error("--small-audit-rows must be below --audit-rows (or 0)")
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    return args


@contextmanager
def _database(url: str, keep: bool) -> Iterator[str]:
    """Yield the URL to work on, creating and dropping a scratch database as needed."""
    if url == "sqlite":
        with tempfile.TemporaryDirectory(prefix="govscale-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'registry.db'}"
        return
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" or parsed.database:
        yield url
        return
    name = f"govscale_{uuid.uuid4().hex[:8]}"
    postgres = parsed.get_backend_name() == "postgresql"
    admin = sa.create_engine(
        parsed.set(database="postgres" if postgres else "mysql"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    scratch = parsed.set(database=name).render_as_string(hide_password=False)
    try:
        yield scratch
    finally:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

        for key in [k for k in SqlAlchemyStore._engine_map if k.endswith(f"/{name}")]:
            SqlAlchemyStore._engine_map.pop(key).dispose()
        if keep:
            print(f"\nkept: {scratch}")
        else:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{' WITH (FORCE)' * postgres}"))
        admin.dispose()


# ---------------------------------------------------------------------- the run


def _analyze(engine: sa.Engine) -> None:
    """Refresh the planner's statistics, as autovacuum does after a bulk load."""
    tables = (
        "governance_audit_log",
        "registered_models",
        "model_versions",
        "registered_model_aliases",
        "model_version_tags",
    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"VACUUM ANALYZE {', '.join(tables)}")
        elif engine.dialect.name in ("mysql", "mariadb"):
            conn.exec_driver_sql(f"ANALYZE TABLE {', '.join(tables)}")
        else:
            conn.exec_driver_sql("ANALYZE")


def run(url: str, args: argparse.Namespace) -> list[Line]:
    """Build the registry on ``url`` and measure; returns the report's lines."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    from mlflow_governance.access.local import LocalAccess
    from mlflow_governance.identity import Identity
    from mlflow_governance.store import GovernedStore

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    registry_uri = f"governed+{url}"
    governed = GovernedStore(url)
    stock = SqlAlchemyStore(url)
    assert stock.engine is governed.engine, "both stores must share one engine"
    engine = governed.engine
    plan = Plan(args.models, args.versions, args.audit_rows, seed=args.seed)

    small: list[Verified] = []
    start = time.perf_counter()
    paused = 0.0

    def verify_small(rows: int) -> None:
        nonlocal paused
        mark = time.perf_counter()
        small.append(verify_in_child(registry_uri))
        paused += time.perf_counter() - mark
        print(
            f"  verified the first {rows:,} rows: {small[0].seconds:.1f} s, "
            f"peak RSS {small[0].peak_mib:.0f} MiB",
            flush=True,
        )

    print(f"building {args.audit_rows:,} audit rows ...", flush=True)
    written = load_audit(engine, plan, at_rows=args.small_audit_rows or None, on_rows=verify_small)
    audit_s = time.perf_counter() - start - paused
    mark = time.perf_counter()
    counts = load_registry(engine, plan)
    registry_s = time.perf_counter() - mark
    _analyze(engine)
    print(
        f"  {written:,} audit rows in {audit_s:.0f} s ({written / audit_s:,.0f} rows/s); "
        f"{counts['model_versions']:,} versions of {counts['registered_models']:,} models, "
        f"{counts['registered_model_aliases']:,} aliases, {counts['model_version_tags']:,} "
        f"tags in {registry_s:.0f} s",
        flush=True,
    )
    lines = [
        Line("build: audit rows chained and inserted", f"{written / audit_s:,.0f} rows/s", "", None)
    ]
    access = LocalAccess(registry_uri, identity=Identity(AUDITOR, "asserted"))
    print("measuring audit list and history ...", flush=True)
    lines += measure_audit_reads(access, engine, written, args.repeats)
    if args.explain:
        busiest, _, typical, _ = models_to_read(engine)
        at = middle_time(engine, written)
        for model in (busiest, typical):
            explain(
                engine,
                f"audit list --model {model}",
                lambda m=model: access.audit_list({"model": m, "limit": 50}),
            )
            explain(engine, f"history {model} --at {at}", lambda m=model: access.history(m, at))
    print("measuring search ...", flush=True)
    lines += measure_search(stock, governed, args.repeats)
    print(f"verifying {written:,} rows in a child process ...", flush=True)
    lines += verify_lines(small[0] if small else None, verify_in_child(registry_uri), written)
    return lines


def _print(lines: list[Line]) -> None:
    width = max(len(line.measurement) for line in lines)
    value_width = max(len(line.value) for line in lines)
    print(f"\n{'measurement':<{width}}  {'value':<{value_width}}  {'bar':<18} result")
    print("-" * (width + value_width + 30))
    for line in lines:
        result = "" if line.ok is None else ("PASS" if line.ok else "FAIL")
        print(f"{line.measurement:<{width}}  {line.value:<{value_width}}  {line.bar:<18} {result}")


def main(argv: list[str] | None = None) -> int:
    """Build, measure and print the table.

    Returns:
        0, or 1 with ``--check`` when a bar is missed.
    """
    args = _parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="govscale-policy-") as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY)
        os.environ["MLFLOW_GOVERNANCE_POLICY"] = str(policy)
        with _database(args.db, args.keep) as url:
            shown = sa.make_url(url).render_as_string(hide_password=True)
            print(f"database: {shown}")
            lines = run(url, args)
    print(
        f"\n{args.versions:,} versions of {args.models:,} models, {args.audit_rows:,} audit "
        f"rows; {args.repeats} measured calls each; {os.cpu_count()} cores; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    _print(lines)
    failed = [line.measurement for line in lines if line.ok is False]
    if failed:
        print(f"\nmissed: {'; '.join(failed)}")
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
