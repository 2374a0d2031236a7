"""What the routes need of the app they run in: where they are mounted and the service.

A leaf module: the extension registers the routes, and the routes find the extension and
the application service through here, so neither imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from flask import current_app

if TYPE_CHECKING:
    from mlflow_governance.application import GovernanceService
    from mlflow_governance.store import GovernedStore
    from mlflow_governance.workflow.promotion import Workflow

EXTENSION_KEY = "mlflow_governance"
API_PREFIX = "/api/2.0/mlflow-governance"
PAGE_PREFIX = "/governance"


class Extension(Protocol):
    """What the routes use of the registered extension."""

    @property
    def auth_mode(self) -> str:
        """``basic`` or ``trusted-header``."""
        ...

    def store(self) -> GovernedStore:
        """The governed store of this process."""
        ...

    def workflow(self) -> Workflow:
        """The approval workflow on the store."""
        ...


def static_prefixed(path: str) -> str:
    """``path`` under MLflow's ``--static-prefix``, as MLflow registers its own routes."""
    from mlflow.server.handlers import _add_static_prefix

    return str(_add_static_prefix(path))


def governance() -> Extension:
    """The extension registered on the current app.

    Raises:
        RuntimeError: None is registered.
    """
    ext = current_app.extensions.get(EXTENSION_KEY)
    if ext is None:
        raise RuntimeError("mlflow_governance is not registered on this app; call init_app.")
    result: Extension = ext
    return result


def service() -> GovernanceService:
    """The application service on this server's governed store."""
    from mlflow_governance.application import GovernanceService

    ext = governance()
    return GovernanceService(ext.store(), ext.workflow())
