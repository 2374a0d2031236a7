"""Throughput of two governed replicas vs two stock replicas, 16 concurrent HTTP clients.

Two ``mlflow server --app-name governance`` replicas (an enforcing policy with a
Production gate, a ``governed+postgresql`` registry) share one fresh PostgreSQL database;
two stock ``mlflow server --app-name basic-auth`` replicas share another. Both pairs
authenticate the same non-admin user with MLflow's basic-auth (credential cache on), so
the difference is the governed write path and authorisation, not password hashing
(``--stock-app none``: the stock pair is a plain ``mlflow server`` that authenticates
nobody). The
databases are created by the script and dropped at the end; the governed one is migrated
first with ``mlflow-governance db upgrade``, as docs/deployment.md says.

Each pair is driven by ``--clients`` threads (default 16, half on each replica), each with
its own keep-alive ``requests`` session, for ``--duration`` seconds per phase:

- ``register``: ``POST model-versions/create``, each client on a model of its own by
  default (``--models 1``: every client on one model, the contended case);
- ``get``: ``GET model-versions/get`` of versions registered before.

Phases alternate between the pairs over ``--rounds`` rounds (governed first in even rounds,
stock first in odd ones), so drift on a shared machine hits both. The table gives
requests per second, median and 95th percentile latency, errors, and the governed/stock
throughput ratio (above 1: the governed pair served more).

Usage::

    .venv/bin/python benchmarks/throughput.py [--db postgresql+psycopg://postgres@127.0.0.1:5432]
        [--clients 16] [--duration 20] [--rounds 2] [--models 16] [--workers 1]
        [--stock-app basic-auth|none] [--keep-logs]

Server logs go to a temporary directory, removed at the end unless ``--keep-logs`` or an
error (then its path is printed). Servers are stopped by process group id, errors and
Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import requests
import sqlalchemy as sa

USER = "bench"
PASSWORD = "bench-Passw0rd-throughput"
ADMIN_PASSWORD = "admin-Passw0rd-throughput"
MODEL_PREFIX = "bench-tp"
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 600.0
STOP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 120.0
OPERATIONS = ("register", "get")

POLICY = f"""\
version: 1
mode: enforce
roles:
  contributor: [read, register, edit, request]
  approver: [read, "approve:production"]
bindings:
  - role: contributor
    principals: ["user:{USER}"]
    models: ["{MODEL_PREFIX}-*"]
  - role: approver
    principals: ["user:approver"]
gates:
  production:
    targets: {{stages: [Production], aliases: [champion]}}
    approvals: {{required: 1, approver_roles: [approver]}}
"""


@dataclass
class Replica:
    """One started ``mlflow server`` process group."""

    label: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Pair:
    """Two replicas on one database, and what was measured on them."""

    label: str
    database: str
    #: ``mlflow server --app-name`` (None: a plain server, no authentication).
    app: str | None
    replicas: list[Replica] = field(default_factory=list)
    versions: dict[str, list[str]] = field(default_factory=dict)
    #: op -> (requests served, seconds of load, latencies in ms, errors)
    served: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0.0))
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    errors: dict[str, list[str]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        default=os.environ.get(
            "MLFLOW_GOVERNANCE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432"
        ),
        help="PostgreSQL server URL without a database name; two scratch databases are made",
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both phases per pair")
    parser.add_argument("--models", type=int, default=0, help="models (default: one per client)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per replica")
    parser.add_argument(
        "--stock-app",
        choices=("basic-auth", "none"),
        default="basic-auth",
        help="the stock pair's --app-name (none: a plain mlflow server)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs")
    args = parser.parse_args(argv)
    if sa.make_url(args.db).get_backend_name() != "postgresql" or sa.make_url(args.db).database:
        parser.error("--db must be a PostgreSQL server URL without a database name")
    args.models = args.models or args.clients
    return args


# ---------------------------------------------------------------------- databases


@contextlib.contextmanager
def scratch_database(server: str, label: str) -> Iterator[str]:
    """Create ``govbench_<label>_<random>``, yield its URL, drop it (connections too)."""
    url = sa.make_url(server)
    name = f"govbench_{label}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


# ---------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(workdir: Path, database: str, governed: bool) -> dict[str, str]:
    """The environment of one pair's replicas: shared users, secret key and policy.

    (A plain server ignores the basic-auth settings.)
    """
    (workdir / "basic_auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {database}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 600\n",
        encoding="utf-8",
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(
        {
            "MLFLOW_AUTH_CONFIG_PATH": str(workdir / "basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    if governed:
        (workdir / "policy.yaml").write_text(POLICY, encoding="utf-8")
        env["MLFLOW_GOVERNANCE_POLICY"] = str(workdir / "policy.yaml")
    return env


def start(label: str, workdir: Path, env: dict[str, str], argv: list[str]) -> Replica:
    port = free_port()
    log = workdir / f"{label}.log"
    command = [str(BIN / "mlflow"), "server", *argv, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    return Replica(label, f"http://127.0.0.1:{port}", process, log)


def wait_healthy(replica: Replica) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{replica.url}/health", timeout=2).status_code == 200:
                return
        try:
            code = replica.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"{replica.label} exited with {code}:\n{tail(replica.log)}")
    raise RuntimeError(f"{replica.label} did not answer /health:\n{tail(replica.log)}")


def stop(replica: Replica) -> None:
    """SIGTERM the replica's process group, then SIGKILL whatever is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(replica.process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        replica.process.wait(timeout=STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(replica.process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        replica.process.wait(timeout=STOP_TIMEOUT)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def pairs(
    workdir: Path, governed_db: str, stock_db: str, args: argparse.Namespace
) -> Iterator[list[Pair]]:
    """Start both pairs; stop every replica started, whatever happens."""
    stock_app = None if args.stock_app == "none" else args.stock_app
    governed, stock = (
        Pair("governed", governed_db, "governance"),
        Pair("stock", stock_db, stock_app),
    )
    started: list[Replica] = []
    try:
        # The governed database is migrated once, before any replica (docs/deployment.md).
        subprocess.run(
            [
                str(BIN / "mlflow-governance"),
                "db",
                "upgrade",
                "--registry-uri",
                f"governed+{governed_db}",
            ],
            check=True,
            capture_output=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            timeout=STARTUP_TIMEOUT,
        )
        setups = ((governed, f"governed+{governed_db}"), (stock, stock_db))
        envs = {}
        for pair, _ in setups:
            home = workdir / pair.label
            home.mkdir()
            envs[pair.label] = server_env(home, pair.database, pair is governed)
        # First replicas of both pairs together, then the second ones: the first start on
        # a database creates basic-auth's (and the stock pair's MLflow) tables alone.
        for index in (1, 2):
            batch = []
            for pair, registry in setups:
                argv = ["--app-name", pair.app] if pair.app else []
                argv += ["--backend-store-uri", pair.database, "--registry-store-uri", registry]
                argv += ["--workers", str(args.workers)]
                argv += ["--artifacts-destination", str(workdir / pair.label / "artifacts")]
                replica = start(
                    f"{pair.label}-{index}", workdir / pair.label, envs[pair.label], argv
                )
                started.append(replica)
                pair.replicas.append(replica)
                batch.append(replica)
            for replica in batch:
                wait_healthy(replica)
        yield [governed, stock]
    finally:
        for replica in started:
            stop(replica)


# ---------------------------------------------------------------------- load


def session(user: str, password: str) -> requests.Session:
    sess = requests.Session()
    sess.auth = (user, password)
    return sess


def prepare(pair: Pair, models: int) -> None:
    """Create the user and the models, and one version of each to read back."""
    first = pair.replicas[0].url
    if pair.app:
        created = requests.post(
            f"{first}/api/2.0/mlflow/users/create",
            json={"username": USER, "password": PASSWORD},
            auth=("admin", ADMIN_PASSWORD),
            timeout=REQUEST_TIMEOUT,
        )
        checked(created)
    with session(USER, PASSWORD) as sess:
        for index in range(models):
            name = f"{MODEL_PREFIX}-{index}"
            response = sess.post(
                f"{first}/api/2.0/mlflow/registered-models/create",
                json={"name": name},
                timeout=REQUEST_TIMEOUT,
            )
            checked(response)
            pair.versions[name] = [register(sess, first, name)]
        # Warm each replica's credential cache and connections.
        for replica in pair.replicas:
            for name in pair.versions:
                get(sess, replica.url, name, pair.versions[name][0])


def checked(response: requests.Response) -> requests.Response:
    """``response`` if it succeeded; else an HTTPError that carries the server's message."""
    if not response.ok:
        raise requests.HTTPError(
            f"{response.status_code} {response.request.method} {response.url}: "
            f"{response.text[:300]}",
            response=response,
        )
    return response


def register(sess: requests.Session, url: str, name: str) -> str:
    response = sess.post(
        f"{url}/api/2.0/mlflow/model-versions/create",
        json={"name": name, "source": f"s3://bench/{name}", "tags": [{"key": "k", "value": "v"}]},
        timeout=REQUEST_TIMEOUT,
    )
    checked(response)
    return str(response.json()["model_version"]["version"])


def get(sess: requests.Session, url: str, name: str, version: str) -> str:
    response = sess.get(
        f"{url}/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": version},
        timeout=REQUEST_TIMEOUT,
    )
    checked(response)
    return version


def drive(pair: Pair, op: str, clients: int, duration: float) -> None:
    """Run ``clients`` threads doing ``op`` against the pair for ``duration`` seconds."""
    names = sorted(pair.versions)
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    stop_at: list[float] = []

    def client(index: int) -> None:
        url = pair.replicas[index % len(pair.replicas)].url
        name = names[index % len(names)]
        rng = random.Random(index)
        latencies: list[float] = []
        errors: list[str] = []
        created: list[str] = []
        with session(USER, PASSWORD) as sess:
            ready.wait()
            while time.monotonic() < stop_at[0]:
                read = rng.choice(names)
                began = time.perf_counter()
                try:
                    if op == "register":
                        result = register(sess, url, name)
                    else:
                        result = get(sess, url, read, rng.choice(pair.versions[read]))
                except requests.RequestException as exc:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                    continue
                latencies.append((time.perf_counter() - began) * 1000)
                if op == "register":
                    created.append(result)
        with lock:
            pair.latencies[op] += latencies
            pair.errors[op] += errors
            pair.served[op] += len(latencies)
            if op == "register":
                pair.versions[name] += created

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    stop_at.append(began + duration)
    ready.wait()
    for thread in threads:
        thread.join()
    pair.seconds[op] += time.monotonic() - began


# ---------------------------------------------------------------------- report


def report(governed: Pair, stock: Pair, args: argparse.Namespace) -> None:
    print(
        f"{args.clients} clients, {args.rounds} round(s) x {args.duration:.0f} s per phase and "
        f"pair, 2 replicas x {args.workers} worker(s) per pair, {args.models} model(s), "
        f"PostgreSQL, same machine; stock: {stock.app or 'plain mlflow server'}"
    )
    print(
        f"{'operation':<10}{'pair':<10}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}"
        f"{'gov/stock':>11}"
    )
    for op in OPERATIONS:
        rates = {}
        for pair in (stock, governed):
            rate = pair.served[op] / pair.seconds[op] if pair.seconds[op] else 0.0
            rates[pair.label] = rate
            lat = sorted(pair.latencies[op]) or [float("nan")]
            p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
            ratio = ""
            if pair is governed and rates["stock"]:
                ratio = f"{rate / rates['stock']:.2f}x"
            print(
                f"{op:<10}{pair.label:<10}{rate:>9.1f}{statistics.median(lat):>9.1f}{p95:>9.1f}"
                f"{len(pair.errors[op]):>8}{ratio:>11}"
            )
    for pair in (governed, stock):
        for op in OPERATIONS:
            for error in sorted(set(pair.errors[op]))[:3]:
                print(f"  {pair.label} {op} error: {error}")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # so the servers are stopped on kill too
    workdir = Path(tempfile.mkdtemp(prefix="throughput-"))
    ok = False
    try:
        with (
            scratch_database(args.db, "tp_gov") as governed_db,
            scratch_database(args.db, "tp_stock") as stock_db,
            pairs(workdir, governed_db, stock_db, args) as (governed, stock),
        ):
            for pair in (governed, stock):
                prepare(pair, args.models)
            for round_no in range(args.rounds):
                order = (governed, stock) if round_no % 2 == 0 else (stock, governed)
                for op in OPERATIONS:
                    for pair in order:
                        drive(pair, op, args.clients, args.duration)
            report(governed, stock, args)
        ok = True
    finally:
        if ok and not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"server logs: {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
