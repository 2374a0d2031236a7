"""The governance server: ``mlflow server --app-name governance``.

MLflow finds :func:`create_app` through the ``mlflow.app`` entry point ``governance`` and,
being a factory, calls it in every uvicorn worker (``--workers N``) or once under
gunicorn/waitress. It adds to MLflow's own server, whose UI and REST API stay as they are:

* authentication: MLflow's basic-auth (default) or a trusted reverse proxy's headers;
  the actor of every governed write is the authenticated user (identity source
  ``server``), never a header the client chose;
* the REST API under ``/api/2.0/mlflow-governance/`` (described by its ``openapi.json``);
* the approval page at ``/governance/``.

Settings are checked before any worker starts: see :func:`check_settings`.

Example::

    MLFLOW_GOVERNANCE_POLICY=policy.yaml MLFLOW_FLASK_SERVER_SECRET_KEY=... \\
    MLFLOW_AUTH_ADMIN_PASSWORD=... mlflow server --app-name governance \\
        --backend-store-uri postgresql://... --registry-store-uri governed+postgresql://...
"""

from __future__ import annotations

import os
import sys
from typing import Any

from mlflow_governance.exceptions import ConfigurationError
from mlflow_governance.server.context import API_PREFIX, EXTENSION_KEY, PAGE_PREFIX, governance
from mlflow_governance.server.extension import Governance
from mlflow_governance.server.settings import Settings

#: The name MLflow knows the app by (``--app-name``), the ``mlflow.app`` entry point's.
APP_NAME = "governance"

#: uvicorn's exit status for a worker that failed before serving (``uvicorn.config``): its
#: supervisor stops instead of restarting the worker. gunicorn halts on it too (its
#: ``WORKER_BOOT_ERROR``).
_STARTUP_FAILURE = 3


def check_settings(registry_uri: str, environ: dict[str, str] | None = None) -> Settings:
    """Validate what the server needs before it serves anything.

    Args:
        registry_uri: The registry store URI the server was given.
        environ: The environment to read (``os.environ`` by default).

    Returns:
        The settings, read from the environment.

    Raises:
        ConfigurationError: The registry is not governed or a setting is missing or
            invalid; the message, one line, names the setting and what to set.
    """
    from mlflow_governance.config import SCHEME_PREFIX

    if not registry_uri.startswith(SCHEME_PREFIX):
        raise ConfigurationError(
            f"mlflow server --app-name {APP_NAME} needs a governed registry: add "
            "--registry-store-uri governed+<database URL> (e.g. governed+sqlite:///mlflow.db "
            "or governed+postgresql://...)."
        )
    return Settings.from_env(environ)


def create_app() -> Any:
    """Build the governance server application (the ``mlflow.app`` factory).

    Returns:
        The ASGI application under uvicorn (MLflow's default server), else the Flask app.

    Raises:
        ConfigurationError: The registry store is not governed or a setting is invalid
            (outside uvicorn; under it the worker exits, see below).
        RuntimeError: Called twice in one process (the extension is registered once).
    """
    from mlflow.server.constants import REGISTRY_STORE_URI_ENV_VAR

    try:
        settings = check_settings(os.environ.get(REGISTRY_STORE_URI_ENV_VAR, ""))
    except ConfigurationError as exc:
        if not _served_by_uvicorn():
            raise
        # `mlflow server` checked this already (see _refuse_to_launch); this is for uvicorn
        # started some other way. A worker that raises is restarted forever, one traceback
        # each time; one that exits with uvicorn's start-up failure status stops them all.
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(_STARTUP_FAILURE) from None
    from mlflow.server import app

    ext = Governance(settings)
    ext.init_app(app, blueprints())
    if _dispatcher_enabled():
        start_dispatcher(ext.store())
    return ext.compose(app, asgi=_served_by_uvicorn())


#: Set to ``true`` to deliver events from each server worker (``events run`` otherwise).
ENV_DISPATCHER = "MLFLOW_GOVERNANCE_DISPATCHER"


def _dispatcher_enabled() -> bool:
    return os.environ.get(ENV_DISPATCHER, "").strip().lower() in ("1", "true", "yes", "on")


def start_dispatcher(store: Any) -> Any:
    """Deliver outbox events from this process, in a daemon thread.

    Every worker of every replica may run one: their claims never overlap. Returns the
    thread's stop event.
    """
    import threading

    from mlflow_governance.events.dispatcher import Dispatcher, policy_sinks

    stop = threading.Event()
    dispatcher = Dispatcher(store.engine, policy_sinks(store))
    thread = threading.Thread(
        target=dispatcher.run_forever,
        args=(stop,),
        name=f"mlflow-governance-{dispatcher.worker}",
        daemon=True,
    )
    thread.start()
    return stop


def blueprints() -> list[tuple[Any, str]]:
    """The governance API and the approval page, with where each is mounted."""
    from mlflow_governance.server import api, page

    return [(api.blueprint, API_PREFIX), (page.blueprint, PAGE_PREFIX)]


def _served_by_uvicorn() -> bool:
    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    return bool(_MLFLOW_SGI_NAME.get() == "uvicorn")


def _refuse_to_launch() -> None:
    """Stop ``mlflow server --app-name governance`` itself when a setting is wrong.

    MLflow's launcher checks basic-auth's settings before it starts workers, but none of
    another app's: each worker would call :func:`create_app`, fail, and be restarted by
    uvicorn in a loop, a traceback per restart. The launcher does import this module
    first (to see that ``create_app`` is a factory), inside its ``server`` command, and
    that import is the only hook it offers. So, in that process only (a click context
    for ``server`` with ``--app-name governance``), the settings are checked here and a
    problem ends the command with click's one-line ``Error: ...`` and status 1. Imported
    anywhere else (a worker, a test, ``python -c``), this does nothing.
    """
    if "click" not in sys.modules:  # not under a click command, so not the launcher
        return
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.info_name != "server" or ctx.params.get("app_name") != APP_NAME:
        return
    # The launcher falls back to the backend store URI when no registry URI is given.
    params = ctx.params
    registry_uri = params.get("registry_store_uri") or params.get("backend_store_uri") or ""
    try:
        check_settings(str(registry_uri))
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


_refuse_to_launch()

__all__ = [
    "APP_NAME",
    "EXTENSION_KEY",
    "Governance",
    "Settings",
    "check_settings",
    "create_app",
    "governance",
]
