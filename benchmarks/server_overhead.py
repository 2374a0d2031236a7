"""What the governance server adds over HTTP: ``--app-name governance`` vs ``basic-auth``.

Two real ``mlflow server`` processes on 127.0.0.1, started from the same code on the same
machine: the governed one (``--app-name governance``, a ``governed+sqlite`` registry, an
enforcing policy) and the stock one (``--app-name basic-auth``, a plain SQLite registry).
Both authenticate the same non-admin user with MLflow's basic-auth, credential cache on,
so the measurement is authorisation plus the governed write path, not password hashing.
Rounds are interleaved (governed first in even rounds, stock first in odd ones) so that
drift on a shared machine hits both alike. Each round times ``model-versions/create`` and
``model-versions/get`` over keep-alive connections.

The bar: the governed server at most 1.3x the stock latency (median) for each call. The
script prints the medians, the ratios and requests per second, and exits 1 when a ratio
is over the bar.

Usage::

    .venv/bin/python benchmarks/server_overhead.py [--rounds 12] [--batch 10] [--workers 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

BAR = 1.3
USER = "bench"
PASSWORD = "bench-Passw0rd-benchmark"
ADMIN_PASSWORD = "admin-Passw0rd-benchmark"
MODEL = "bench-model"
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
STARTUP_TIMEOUT = 600.0

POLICY = f"""\
version: 1
mode: enforce
roles:
  contributor: [read, register, edit, request]
bindings:
  - role: contributor
    principals: ["user:{USER}"]
    models: ["bench-*"]
"""


@dataclass
class Server:
    """A started server and its timings."""

    label: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    session: requests.Session = field(default_factory=requests.Session)
    timings: dict[str, list[float]] = field(default_factory=lambda: {"create": [], "get": []})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(label: str, workdir: Path, app: str, registry: str, workers: int) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "basic_auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{workdir / 'auth.db'}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 600\n",
        encoding="utf-8",
    )
    (workdir / "policy.yaml").write_text(POLICY, encoding="utf-8")
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(workdir / "basic_auth.ini"),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_GOVERNANCE_POLICY": str(workdir / "policy.yaml"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_GOVERNANCE_AUTH"):
        env.pop(name, None)
    port = free_port()
    db = f"sqlite:///{workdir / 'mlflow.db'}"
    argv = [
        MLFLOW,
        "server",
        "--app-name",
        app,
        "--backend-store-uri",
        db,
        "--registry-store-uri",
        registry.format(db=db),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(label, f"http://127.0.0.1:{port}", process, log)


def wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        try:
            code = server.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
        raise SystemExit(f"{server.label} server exited with {code}:\n{tail(server.log)}")
    raise SystemExit(f"{server.label} server did not start:\n{tail(server.log)}")


def stop(server: Server) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def prepare(server: Server) -> None:
    """Create the user and the model, then warm both servers' caches and connections."""
    created = requests.post(
        f"{server.url}/api/2.0/mlflow/users/create",
        json={"username": USER, "password": PASSWORD},
        auth=("admin", ADMIN_PASSWORD),
        timeout=120,
    )
    created.raise_for_status()
    server.session.auth = (USER, PASSWORD)
    response = server.session.post(
        f"{server.url}/api/2.0/mlflow/registered-models/create", json={"name": MODEL}, timeout=120
    )
    response.raise_for_status()
    for _ in range(5):
        version = call_create(server)
        call_get(server, version)
    for timings in server.timings.values():
        timings.clear()


def call_create(server: Server) -> str:
    start_ns = time.perf_counter_ns()
    response = server.session.post(
        f"{server.url}/api/2.0/mlflow/model-versions/create",
        json={"name": MODEL, "source": f"s3://bench/{MODEL}", "tags": [{"key": "k", "value": "v"}]},
        timeout=120,
    )
    server.timings["create"].append((time.perf_counter_ns() - start_ns) / 1e6)
    response.raise_for_status()
    return str(response.json()["model_version"]["version"])


def call_get(server: Server, version: str) -> None:
    start_ns = time.perf_counter_ns()
    response = server.session.get(
        f"{server.url}/api/2.0/mlflow/model-versions/get",
        params={"name": MODEL, "version": version},
        timeout=120,
    )
    server.timings["get"].append((time.perf_counter_ns() - start_ns) / 1e6)
    response.raise_for_status()


@contextlib.contextmanager
def servers(workdir: Path, workers: int) -> Iterator[tuple[Server, Server]]:
    governed = start("governed", workdir / "governed", "governance", "governed+{db}", workers)
    stock = start("stock", workdir / "stock", "basic-auth", "{db}", workers)
    try:
        wait_healthy(governed)
        wait_healthy(stock)
        yield governed, stock
    finally:
        for server in (governed, stock):
            server.session.close()
            stop(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batch", type=int, default=10, help="calls per server per round")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bar", type=float, default=BAR)
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="server-overhead-") as tmp,
        servers(Path(tmp), args.workers) as (governed, stock),
    ):
        prepare(governed)
        prepare(stock)
        for round_no in range(args.rounds):
            order = (governed, stock) if round_no % 2 == 0 else (stock, governed)
            for server in order:
                for _ in range(args.batch):
                    call_get(server, call_create(server))
        return report(governed, stock, args)


def report(governed: Server, stock: Server, args: argparse.Namespace) -> int:
    calls = args.rounds * args.batch
    print(
        f"{calls} calls per operation and server, {args.rounds} interleaved rounds, "
        f"{args.workers} worker(s) each, same machine"
    )
    print(
        f"{'call':<24}{'stock ms':>10}{'governed ms':>13}{'ratio':>8}"
        f"{'stock req/s':>13}{'governed req/s':>16}"
    )
    worst = 0.0
    for op, route in (("create", "model-versions/create"), ("get", "model-versions/get")):
        base = statistics.median(stock.timings[op])
        gov = statistics.median(governed.timings[op])
        ratio = gov / base
        worst = max(worst, ratio)
        print(
            f"{route:<24}{base:>10.2f}{gov:>13.2f}{ratio:>7.2f}x"
            f"{1000 / statistics.mean(stock.timings[op]):>13.1f}"
            f"{1000 / statistics.mean(governed.timings[op]):>16.1f}"
        )
    both_stock = sum(stock.timings["create"]) + sum(stock.timings["get"])
    both_gov = sum(governed.timings["create"]) + sum(governed.timings["get"])
    print(
        f"{'create+get (total)':<24}{both_stock / calls:>10.2f}{both_gov / calls:>13.2f}"
        f"{both_gov / both_stock:>7.2f}x{2000 * calls / both_stock:>13.1f}"
        f"{2000 * calls / both_gov:>16.1f}"
    )
    verdict = "within" if worst <= args.bar else "OVER"
    print(f"worst median ratio {worst:.2f}x: {verdict} the {args.bar:.2f}x bar")
    return 0 if worst <= args.bar else 1


if __name__ == "__main__":
    sys.exit(main())
