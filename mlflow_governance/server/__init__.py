"""The governance server: ``mlflow server --app-name governance``.

MLflow finds :func:`create_app` through the ``mlflow.app`` entry point ``governance`` and,
being a factory, calls it in every uvicorn worker (``--workers N``) or once under
gunicorn/waitress. It adds to MLflow's own server, whose UI and REST API stay as they are:

* authentication: MLflow's basic-auth (default) or a trusted reverse proxy's headers;
  the actor of every governed write is the authenticated user (identity source
  ``server``), never a header the client chose;
* the REST API under ``/api/2.0/mlflow-governance/`` (described by its ``openapi.json``);
* the approval page at ``/governance/``.

Example::

    MLFLOW_GOVERNANCE_POLICY=policy.yaml MLFLOW_FLASK_SERVER_SECRET_KEY=... \\
    MLFLOW_AUTH_ADMIN_PASSWORD=... mlflow server --app-name governance \\
        --backend-store-uri postgresql://... --registry-store-uri governed+postgresql://...
"""

from __future__ import annotations

import os
from typing import Any

from mlflow_governance.server.extension import EXTENSION_KEY, Governance, governance
from mlflow_governance.server.settings import Settings


def create_app() -> Any:
    """Build the governance server application (the ``mlflow.app`` factory).

    Returns:
        The ASGI application under uvicorn (MLflow's default server), else the Flask app.

    Raises:
        ConfigurationError: The registry store is not governed or a setting is invalid.
        RuntimeError: Called twice in one process (the extension is registered once).
    """
    from mlflow.server import app
    from mlflow.server.constants import REGISTRY_STORE_URI_ENV_VAR

    from mlflow_governance.config import SCHEME_PREFIX
    from mlflow_governance.exceptions import ConfigurationError

    registry_uri = os.environ.get(REGISTRY_STORE_URI_ENV_VAR, "")
    if not registry_uri.startswith(SCHEME_PREFIX):
        raise ConfigurationError(
            "mlflow server --app-name governance needs a governed registry: add "
            "--registry-store-uri governed+<database URL> (e.g. governed+sqlite:///mlflow.db "
            "or governed+postgresql://...)."
        )
    ext = Governance(Settings.from_env())
    ext.init_app(app)
    return ext.compose(app, asgi=_served_by_uvicorn())


def _served_by_uvicorn() -> bool:
    from mlflow.environment_variables import _MLFLOW_SGI_NAME

    return bool(_MLFLOW_SGI_NAME.get() == "uvicorn")


__all__ = ["EXTENSION_KEY", "Governance", "Settings", "create_app", "governance"]
