"""A governance server with a missing setting stops at once, with one line saying which.

Without the check in the launcher, each uvicorn worker called the app factory, raised,
and was restarted by uvicorn, forever, with a traceback per restart. These tests start the
real ``mlflow server --app-name governance`` and wait, with a bound, for it to exit.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.server.conftest import server_env
from tests.servers import DEFAULT_ENV, MLFLOW, free_port, stop

pytestmark = pytest.mark.slow

#: An upper bound for MLflow's import and migrations on a loaded two-core machine; a
#: server that loops never exits, so it fails the test instead of hanging it.
EXIT_TIMEOUT = 120


def _launch(workdir: Path, env: dict[str, str | None], registry: str) -> tuple[int, str]:
    """Run the server with ``env`` until it exits; its status and its stderr."""
    full = {**os.environ, **DEFAULT_ENV}
    for name, value in env.items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    db = f"sqlite:///{workdir / 'mlflow.db'}"
    argv = [
        MLFLOW,
        "server",
        "--app-name",
        "governance",
        "--backend-store-uri",
        db,
        "--registry-store-uri",
        registry.format(db=db),
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--workers",
        "2",  # several workers: the case where uvicorn's supervisor restarted them
    ]
    stderr = workdir / "stderr.log"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        code = process.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server kept running:\n{stderr.read_text(errors='replace')[-3000:]}")
    finally:
        stop(process)  # its whole process group, whatever happened
    return code, stderr.read_text(errors="replace")


@pytest.mark.parametrize(
    ("missing", "registry", "names"),
    [
        ("MLFLOW_FLASK_SERVER_SECRET_KEY", "governed+{db}", "MLFLOW_FLASK_SERVER_SECRET_KEY"),
        (None, "{db}", "--registry-store-uri governed+"),
    ],
    ids=["no-secret-key", "registry-not-governed"],
)
def test_a_missing_setting_stops_the_server_with_one_line(
    tmp_path: Path, missing: str | None, registry: str, names: str
) -> None:
    env = server_env(tmp_path, auth_db=f"sqlite:///{tmp_path / 'auth.db'}")
    if missing:
        env[missing] = None
    code, stderr = _launch(tmp_path, env, registry)
    assert code != 0, stderr
    lines = [line for line in stderr.splitlines() if names in line]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), lines
    assert "Traceback" not in stderr, stderr
    assert "Child process" not in stderr, stderr  # no worker was started, let alone restarted


def test_uvicorn_started_directly_stops_instead_of_restarting_workers(tmp_path: Path) -> None:
    """The factory's own check, for uvicorn run without MLflow's launcher."""
    env = {
        **os.environ,
        "_MLFLOW_SGI_NAME": "uvicorn",
        "_MLFLOW_SERVER_REGISTRY_STORE": f"governed+sqlite:///{tmp_path / 'mlflow.db'}",
    }
    env.pop("MLFLOW_FLASK_SERVER_SECRET_KEY", None)
    argv = [
        str(Path(MLFLOW).with_name("python")),
        "-m",
        "uvicorn",
        "--factory",
        "mlflow_governance.server:create_app",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
    ]
    process = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, raw = process.communicate(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        stop(process)
        pytest.fail("uvicorn kept restarting the workers")
    stop(process)
    stderr = raw.decode(errors="replace")
    assert "Error: Set MLFLOW_FLASK_SERVER_SECRET_KEY" in stderr, stderr
    assert "failed to start, stopping the parent process" in stderr, stderr
    assert "Traceback" not in stderr, stderr
