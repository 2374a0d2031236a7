"""mlflow-governance: a governed MLflow model registry.

Point ``MLFLOW_REGISTRY_URI`` at ``governed+sqlite:///…`` (or PostgreSQL, MySQL) and every
registration, stage transition and alias move made through the stock MLflow client, REST
API and UI is authorised, gated and written to a tamper-evident audit log.
"""

from __future__ import annotations

from mlflow_governance.exceptions import (
    AuditIntegrityError,
    ConfigurationError,
    Conflict,
    GovernanceError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PolicyFileError,
)
from mlflow_governance.identity import Identity, acting_as, current_identity

__version__ = "0.1.0"

__all__ = [
    "AuditIntegrityError",
    "ConfigurationError",
    "Conflict",
    "GovernanceError",
    "Identity",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "PolicyFileError",
    "__version__",
    "acting_as",
    "current_identity",
]
