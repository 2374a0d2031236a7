"""Real MLflow servers for tests: ``mlflow server`` or ``mlflow ui`` as a subprocess.

:func:`mlflow_server` starts the project venv's ``mlflow`` on 127.0.0.1 and a free port in
a process group of its own, waits until ``/health`` answers (bounded, short HTTP attempts,
paced by waiting on the process itself so an early crash is reported at once), yields the
base URL, and stops the whole group by its id: SIGTERM, a bounded wait, then SIGKILL for
whatever is left. Each server gets its own port and log file, so tests using it run in
parallel under xdist.

Typical use, one server per test module::

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        workdir = tmp_path_factory.mktemp("server")
        db = f"sqlite:///{workdir / 'mlflow.db'}"
        with mlflow_server(
            ["--backend-store-uri", db, "--registry-store-uri", f"governed+{db}"],
            workdir=workdir,
        ) as running:
            yield running
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The ``mlflow`` console script of the interpreter running the tests (the project venv).
MLFLOW = str(Path(sys.executable).with_name("mlflow"))

#: Importing MLflow and running its migrations twice (launcher, then worker) takes tens of
#: seconds on a loaded machine; this is an upper bound, not a wait.
DEFAULT_STARTUP_TIMEOUT = 300.0
_POLL_INTERVAL = 0.2
_STOP_TIMEOUT = 30.0
_BIND_ERRORS = ("address already in use", "error while attempting to bind")

#: Environment defaults for test servers: no background job runner (it spawns a handful of
#: consumer processes that the registry does not need and that slow the start down).
DEFAULT_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class ServerStartError(RuntimeError):
    """The server exited or did not answer /health in time; carries its log tail."""


@dataclass(frozen=True)
class RunningServer:
    """A started server.

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:50123`` (no trailing slash).
        pid: The launcher's process id, which is also its process group id.
        port: The TCP port.
        log: The file holding the server's stdout and stderr.
    """

    url: str
    pid: int
    port: int
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the server's output, for failure messages."""
        return _tail(self.log, lines)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(
    args: Sequence[str],
    *,
    workdir: Path,
    command: str = "server",
    env: Mapping[str, str | None] | None = None,
    workers: int = 1,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    attempts: int = 3,
) -> Iterator[RunningServer]:
    """Run ``mlflow <command> <args> --host 127.0.0.1 --port <free>`` for the block.

    Args:
        args: Arguments after the command, e.g. ``["--backend-store-uri", uri]``.
        workdir: The server's working directory; its log goes there too.
        command: ``server`` or ``ui``.
        env: Variables to set (a value of None removes the variable) on top of this
            process's environment and :data:`DEFAULT_ENV`.
        workers: Uvicorn workers (one keeps start-up short and state in one process).
        startup_timeout: Upper bound for /health to answer.
        attempts: Ports to try when the chosen one was taken in the meantime.

    Yields:
        The running server.

    Raises:
        ServerStartError: The server exited early or never became healthy.
    """
    full_env = {**os.environ, **DEFAULT_ENV}
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    server: RunningServer | None = None
    process: subprocess.Popen[bytes] | None = None
    for attempt in range(1, attempts + 1):
        port = free_port()
        log = workdir / f"mlflow-{command}-{port}.log"
        argv = [MLFLOW, command, *args, "--host", "127.0.0.1", "--port", str(port)]
        if workers:
            argv += ["--workers", str(workers)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        server = RunningServer(f"http://127.0.0.1:{port}", process.pid, port, log)
        try:
            _wait_healthy(process, server, startup_timeout)
            break
        except ServerStartError:
            stop(process)
            port_taken = any(marker in server.log_tail().lower() for marker in _BIND_ERRORS)
            if attempt < attempts and port_taken:
                continue
            raise
    assert server is not None and process is not None
    try:
        yield server
    finally:
        stop(process)


def _wait_healthy(process: subprocess.Popen[bytes], server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        # Pace the attempts by waiting on the process: returns at once if it died.
        try:
            code = process.wait(timeout=_POLL_INTERVAL)
        except subprocess.TimeoutExpired:
            continue
        raise ServerStartError(
            f"mlflow exited with code {code} before answering /health:\n{server.log_tail()}"
        )
    raise ServerStartError(
        f"mlflow did not answer {server.url}/health within {timeout:.0f}s:\n{server.log_tail()}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server's whole process group: SIGTERM, bounded wait, then SIGKILL.

    Args:
        process: The launcher started by :func:`mlflow_server` (its pid is the group id).
    """
    pgid = process.pid
    _signal_group(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _signal_group(pgid, signal.SIGKILL)
        process.wait(timeout=_STOP_TIMEOUT)
    # Workers normally exit with the launcher; anything of the group still there is killed.
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
