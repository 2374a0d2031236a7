"""The measurements of ``benchmarks/scale.py``: audit reads, governed search, verify.

Each returns report lines (:class:`Line`) with the value measured and the bar it is held
to; ``scale.py`` builds the registry and prints them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from scale_data import READER_GLOBS

LIST_BAR_MS = 50.0
HISTORY_BAR_MS = 100.0
SEARCH_BAR = 1.5
VERIFY_BAR_S = 30.0
#: Peak RSS of verify at the full log, relative to the run at the smaller log.
FLAT_BAR = 1.10

AUDITOR = "auditor"
READER = "reader"


@dataclass(frozen=True)
class Line:
    """One line of the report."""

    measurement: str
    value: str
    bar: str
    ok: bool | None  # None: informational


# ---------------------------------------------------------------------- timing helpers


def _times_ms(call: Callable[[], Any], repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def _latency_line(name: str, samples: list[float], bar_ms: float) -> Line:
    median, p95 = statistics.median(samples), _p95(samples)
    return Line(
        name,
        f"median {median:.1f} ms, p95 {p95:.1f} ms",
        f"< {bar_ms:.0f} ms",
        p95 < bar_ms,
    )


# ---------------------------------------------------------------------- verification


#: The child: ``audit verify`` as the command line runs it in local mode (``LocalAccess``
#: over ``GovernanceService``), timed around the call itself so that start-up (importing
#: MLflow, opening the store) is reported apart. Importing MLflow peaks higher than a
#: streaming verify ever needs, so the kernel's peak-RSS mark is reset (Linux
#: ``clear_refs``) just before the call: the peak the parent then reads from ``wait4`` is
#: the verification's own.
_VERIFY_CHILD = """
import json, re, sys, time
from mlflow_governance.access.local import LocalAccess
from mlflow_governance.identity import Identity
access = LocalAccess(sys.argv[1], identity=Identity(sys.argv[2], "asserted"))
status = open("/proc/self/status").read()
before = int(re.search(r"VmRSS:\\s+(\\d+)", status).group(1))
with open("/proc/self/clear_refs", "w") as marks:
    marks.write("5")
start = time.perf_counter()
answer = access.audit_verify()
seconds = time.perf_counter() - start
print(json.dumps({"answer": answer, "seconds": seconds, "rss_before_kib": before}))
"""


@dataclass(frozen=True)
class Verified:
    """One ``audit verify`` run in a child process.

    Attributes:
        seconds: Wall time of the verification call itself.
        total_seconds: Wall time of the child, start-up included.
        cpu_seconds: The child's user and system CPU time.
        peak_mib: The child's peak RSS during the verification, as the kernel accounts it.
        before_mib: Its RSS when the verification began (MLflow imported, store open).
        answer: The service's answer (``ok``, ``rows``, ...).
    """

    seconds: float
    total_seconds: float
    cpu_seconds: float
    peak_mib: float
    before_mib: float
    answer: dict[str, Any]


def verify_in_child(registry_uri: str) -> Verified:
    """Verify the whole chain in a fresh child process and read its peak RSS."""
    command = [sys.executable, "-c", _VERIFY_CHILD, registry_uri, AUDITOR]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        out = proc.stdout.read()
        # wait4 gives this child's own resource usage (getrusage(RUSAGE_CHILDREN) would
        # give the maximum over every child waited for so far).
        _, status, usage = os.wait4(proc.pid, 0)
        total = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        try:
            data = json.loads(out)
        except ValueError:
            err.seek(0)
            raise RuntimeError(
                f"audit verify exited {proc.returncode} without its answer:\n"
                f"{err.read().decode(errors='replace')}"
            ) from None
    return Verified(
        seconds=float(data["seconds"]),
        total_seconds=total,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_mib=usage.ru_maxrss / 1024,
        before_mib=int(data["rss_before_kib"]) / 1024,
        answer=data["answer"],
    )


# ---------------------------------------------------------------------- the measurements


def models_to_read(engine: sa.Engine) -> tuple[str, int, str, int]:
    """The busiest model and a typical one (the median by audit rows), with row counts."""
    with engine.connect() as conn:
        counts = conn.execute(
            sa.text(
                "SELECT model, COUNT(*) AS n FROM governance_audit_log "
                "WHERE model IS NOT NULL GROUP BY model ORDER BY n DESC, model"
            )
        ).all()
    busiest, typical = counts[0], counts[len(counts) // 2]
    return busiest.model, int(busiest.n), typical.model, int(typical.n)


def middle_time(engine: sa.Engine, rows: int) -> str:
    from mlflow_governance.audit.chain import format_time
    from mlflow_governance.audit.tables import audit_log

    with engine.connect() as conn:
        value = conn.execute(
            sa.select(audit_log.c.time).where(audit_log.c.id == rows // 2)
        ).scalar_one()
    return format_time(value)


def measure_audit_reads(access: Any, engine: sa.Engine, rows: int, repeats: int) -> list[Line]:
    """``audit list --model M --limit 50`` and ``history M --at T``, in process."""
    busiest, busy_rows, typical, typical_rows = models_to_read(engine)
    at = middle_time(engine, rows)
    lines = []
    for model, count in ((busiest, busy_rows), (typical, typical_rows)):
        who = f"{model} ({count:,} rows)"
        args = {"model": model, "limit": 50}
        page = access.audit_list(args)
        assert len(page) == 50 and all(r["model"] == model for r in page), "a short audit page"
        samples = _times_ms(lambda a=args: access.audit_list(a), repeats)
        lines.append(_latency_line(f"audit list --model {who} --limit 50", samples, LIST_BAR_MS))
        newest = {**args, "newest_first": True}
        samples = _times_ms(lambda a=newest: access.audit_list(a), repeats)
        lines.append(
            _latency_line(f"audit list --model {who} --limit 50 --newest-first", samples, 50)
        )
        holders = access.history(model, at)
        assert holders, f"nobody held a stage or alias of {model} at {at}"
        assert holders == _replayed(engine, model, at), f"history {model} --at: wrong holders"
        samples = _times_ms(lambda m=model: access.history(m, at), repeats)
        lines.append(
            _latency_line(
                f"history {who} --at <middle> ({len(holders)} holders)", samples, HISTORY_BAR_MS
            )
        )
    return lines


def _replayed(engine: sa.Engine, model: str, at: str) -> list[dict[str, Any]]:
    """The holders at ``at`` by replaying every change of the model, for comparison."""
    from mlflow_governance.audit.chain import parse_time
    from mlflow_governance.audit.history import history, holders_at

    with engine.connect() as conn:
        found = holders_at(history(conn, model, parse_time(at)))
    return [json.loads(json.dumps(holding.__dict__, default=str)) for holding in found]


def measure_search(stock: Any, governed: Any, repeats: int) -> list[Line]:
    """Governed search for a reader of a fifth of the models vs stock search of all."""
    from fnmatch import fnmatchcase

    from mlflow_governance.identity import Identity, acting_as

    reader = Identity(READER, "server")

    def readable(name: str) -> bool:
        return any(fnmatchcase(name, glob) for glob in READER_GLOBS)

    with governed.engine.connect() as conn:
        per_model = conn.execute(
            sa.text("SELECT name, COUNT(*) FROM model_versions GROUP BY name")
        ).all()
    readable_models = sum(1 for name, _ in per_model if readable(name))
    readable_versions = sum(count for name, count in per_model if readable(name))
    with acting_as(reader):
        first = governed.search_registered_models(max_results=100)
        readable_model = first[0].name
    # (label, call, rows a full page holds given what the reader may read; None: any)
    cases: list[tuple[str, Callable[[Any], Any], int | None]] = [
        (
            "search_registered_models, 100 per page",
            lambda s: s.search_registered_models(max_results=100),
            min(100, readable_models),
        ),
        (
            "search_model_versions, 100 per page",
            lambda s: s.search_model_versions(max_results=100),
            min(100, readable_versions),
        ),
        (
            "search_model_versions, 1000 per page",
            lambda s: s.search_model_versions(max_results=1000),
            min(1000, readable_versions),
        ),
        (
            "search_model_versions, page 3 of 100 per page",
            lambda s: _page(s, 3),
            max(0, min(100, readable_versions - 200)),
        ),
        (
            "search_model_versions name = <one model>",
            lambda s: s.search_model_versions(f"name = '{readable_model}'", max_results=100),
            None,
        ),
    ]
    lines = []
    for label, call, full in cases:
        with acting_as(reader):
            page = call(governed)
        names = [item.name for item in page]
        assert all(readable(n) for n in names), f"{label}: the reader got a model they may not read"
        if full is not None:
            assert len(names) == full, f"{label}: {len(names)} rows where {full} are readable"
        stock_ms: list[float] = []
        governed_ms: list[float] = []
        for round_ in range(repeats + 3):
            order = ("stock", "governed") if round_ % 2 == 0 else ("governed", "stock")
            for side in order:
                start = time.perf_counter()
                if side == "stock":
                    call(stock)
                else:
                    with acting_as(reader):
                        call(governed)
                elapsed = (time.perf_counter() - start) * 1000
                if round_ >= 3:  # the first rounds warm both sides up
                    (stock_ms if side == "stock" else governed_ms).append(elapsed)
        ratio = statistics.median(governed_ms) / statistics.median(stock_ms)
        lines.append(
            Line(
                f"{label} (governed reader vs stock)",
                f"{statistics.median(governed_ms):.1f} vs {statistics.median(stock_ms):.1f} ms"
                f" = {ratio:.2f}x; page of {len(names)} rows"
                f"{'' if full is None else f' ({full} expected)'}, all readable",
                f"<= {SEARCH_BAR}x",
                ratio <= SEARCH_BAR,
            )
        )
    return lines


def _page(store: Any, number: int) -> list[Any]:
    """Page ``number`` (from 1) of a version search, 100 per page; empty past the last."""
    token = None
    for index in range(number):
        page = store.search_model_versions(max_results=100, page_token=token)
        token = page.token
        if token is None and index < number - 1:
            return []
    return list(page)


def verify_lines(small: Verified | None, full: Verified, rows: int) -> list[Line]:
    """Report lines for the verify runs."""
    answer = full.answer
    correct = bool(answer["ok"]) and int(answer["rows"]) == rows
    lines = [
        Line(
            f"audit verify over {rows:,} rows",
            f"{full.seconds:.1f} s (ok={answer['ok']}, rows={answer['rows']:,}; child "
            f"{full.total_seconds:.1f} s with start-up, {full.cpu_seconds:.1f} s CPU)",
            f"< {VERIFY_BAR_S:.0f} s",
            full.seconds < VERIFY_BAR_S and correct,
        ),
        Line(
            f"peak RSS of verify over {rows:,} rows",
            f"{full.peak_mib:.0f} MiB ({full.before_mib:.0f} MiB before verifying, "
            f"+{full.peak_mib - full.before_mib:.0f} MiB)",
            "",
            None,
        ),
    ]
    if small is not None:
        lines.append(
            Line(
                f"audit verify over {small.answer['rows']:,} rows",
                f"{small.seconds:.1f} s, peak RSS {small.peak_mib:.0f} MiB "
                f"({small.before_mib:.0f} before, +{small.peak_mib - small.before_mib:.0f})",
                "",
                None,
            )
        )
        from mlflow_governance.audit.query import _VERIFY_BATCH

        ratio = full.peak_mib / small.peak_mib
        # Below two of verify's pages the smaller log does not fill its buffers: the
        # comparison would measure page size, not growth with the log.
        meaningful = int(small.answer["rows"]) >= 2 * _VERIFY_BATCH
        lines.append(
            Line(
                f"peak RSS of verify, {rows:,} vs {small.answer['rows']:,} rows",
                f"{full.peak_mib:.0f} vs {small.peak_mib:.0f} MiB = {ratio:.2f}x"
                + ("" if meaningful else f" (under {2 * _VERIFY_BATCH:,} rows: not judged)"),
                f"<= {FLAT_BAR:.2f}x (flat)",
                ratio <= FLAT_BAR if meaningful else None,
            )
        )
    return lines


# ---------------------------------------------------------------------- query plans


@contextmanager
def _captured(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements run on ``engine`` inside the block, with their parameters."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def explain(engine: sa.Engine, label: str, call: Callable[[], Any]) -> None:
    """Print ``EXPLAIN (ANALYZE, BUFFERS)`` of every audit-log SELECT ``call`` runs."""
    if engine.dialect.name != "postgresql":
        print(f"(--explain prints PostgreSQL plans only; skipped {label})")
        return
    with _captured(engine) as statements:
        call()
    with engine.connect() as conn:
        for statement, params in statements:
            if "governance_audit_log" not in statement or not statement.lstrip().startswith(
                "SELECT"
            ):
                continue
            print(f"\n--- {label}\n{statement}\n{params}")
            plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params)
            print("\n".join(row[0] for row in plan))
