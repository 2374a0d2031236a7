"""Measure governance events: the outbox's cost on a write, and the dispatcher's throughput.

1. **Outbox overhead.** ``create_model_version`` on stock MLflow and on the governed store,
   interleaved in one run on one SQLite file: once under a policy without
   ``notifications:`` and once with a webhook configured. Events are written to the
   outbox either way (delivery is never in the write path), so both ratios should match.
2. **Dispatcher throughput.** The events of those writes delivered by one dispatcher to a
   webhook receiver on 127.0.0.1, signed: events per second.

Usage::

    .venv/bin/python benchmarks/events.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

POLICY = """\
version: 1
mode: enforce
roles:
  admin: ["*"]
bindings:
  - role: admin
    principals: ["user:bench"]
"""


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()


def _stores(workdir: Path) -> tuple[Any, Any]:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    from mlflow_governance.entry import build_store

    url = f"sqlite:///{workdir / 'registry.db'}"
    governed = build_store(f"governed+{url}")
    stock = SqlAlchemyStore(url)
    stock.create_registered_model("stock-model")
    governed.create_registered_model("governed-model")
    return stock, governed


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def overhead(stock: Any, governed: Any, rounds: int) -> float:
    """Median governed/stock ratio of create_model_version, interleaved."""
    stock_ms, governed_ms = [], []
    for i in range(rounds):
        pair = [
            (stock_ms, lambda: stock.create_model_version("stock-model", "s3://b/m")),
            (governed_ms, lambda: governed.create_model_version("governed-model", "s3://b/m")),
        ]
        for samples, call in pair if i % 2 else reversed(pair):
            samples.append(_timed(call))
    return statistics.median(governed_ms) / statistics.median(stock_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    with tempfile.TemporaryDirectory(prefix="govevents-") as tmp:
        workdir = Path(tmp)
        plain, with_sink = workdir / "plain.yaml", workdir / "sink.yaml"
        plain.write_text(POLICY)
        with_sink.write_text(
            POLICY + f"notifications:\n  - {{type: webhook, url: '{url}', allow_insecure: true}}\n"
        )
        os.environ.update(
            MLFLOW_TRACKING_USERNAME="bench",
            MLFLOW_GOVERNANCE_POLICY_REFRESH="0",
            MLFLOW_GOVERNANCE_POLICY=str(plain),
        )
        stock, governed = _stores(workdir)
        overhead(stock, governed, 20)  # warm-up
        without = overhead(stock, governed, args.rounds)
        os.environ["MLFLOW_GOVERNANCE_POLICY"] = str(with_sink)
        with_sinks = overhead(stock, governed, args.rounds)

        import sqlalchemy as sa

        from mlflow_governance.audit.tables import outbox
        from mlflow_governance.events.dispatcher import Dispatcher, policy_sinks

        with governed.engine.connect() as conn:
            pending = conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar()
        dispatcher = Dispatcher(governed.engine, policy_sinks(governed), batch=100)
        start = time.perf_counter()
        report = dispatcher.drain()
        seconds = time.perf_counter() - start
    receiver.shutdown()
    print(f"rounds: {args.rounds} per configuration, SQLite, medians, interleaved with stock")
    print(f"create_model_version, policy without notifications: {without:.2f}x stock")
    print(f"create_model_version, policy with a webhook:        {with_sinks:.2f}x stock")
    print(
        f"dispatcher: {report.delivered} of {pending} events to a local webhook in "
        f"{seconds:.2f} s = {report.delivered / seconds:.0f} events/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
