"""Configuration read from the environment and the registry URI, in one place.

Environment variables:
    MLFLOW_GOVERNANCE_POLICY: Path of the policy YAML file; overrides the applied policy.
    MLFLOW_GOVERNANCE_POLICY_REFRESH: Seconds a loaded policy is trusted before the
        file's modification time or the database is checked again (default 2).
    MLFLOW_TRACKING_USERNAME: The actor in local mode.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from mlflow_governance.exceptions import ConfigurationError

SCHEME_PREFIX = "governed+"

#: The database URL schemes accepted after ``governed+`` (one entry point each).
SUPPORTED_SUFFIXES = (
    "sqlite",
    "postgresql",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "mysql",
    "mysql+pymysql",
)

ENV_POLICY = "MLFLOW_GOVERNANCE_POLICY"
ENV_POLICY_REFRESH = "MLFLOW_GOVERNANCE_POLICY_REFRESH"
#: The server's address as people reach it (links in messages), e.g. behind a proxy.
ENV_PUBLIC_URL = "MLFLOW_GOVERNANCE_PUBLIC_URL"
DEFAULT_POLICY_REFRESH_SECONDS = 2.0


def database_uri(store_uri: str) -> str:
    """Strip the ``governed+`` prefix and check that the rest is a supported database URL.

    Args:
        store_uri: A registry URI such as ``governed+postgresql://host/db``.

    Returns:
        The SQLAlchemy URL MLflow's SQL store accepts, e.g. ``postgresql://host/db``.

    Raises:
        ConfigurationError: The URI does not start with ``governed+`` or names a database
            scheme the plugin does not support; the message lists the supported ones.
    """
    scheme = urlsplit(store_uri).scheme
    suffix = scheme[len(SCHEME_PREFIX) :] if scheme.startswith(SCHEME_PREFIX) else None
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(f"{SCHEME_PREFIX}{s}://" for s in SUPPORTED_SUFFIXES)
        raise ConfigurationError(
            f"Unsupported governed registry URI scheme '{scheme}' in '{_redact(store_uri)}'. "
            f"Supported schemes: {supported}. Example: governed+sqlite:///registry.db"
        )
    return store_uri[len(SCHEME_PREFIX) :]


def plain_uri(uri: str | None) -> str | None:
    """Strip ``governed+`` when present (e.g. a read replica given in governed form)."""
    if uri and uri.startswith(SCHEME_PREFIX):
        return uri[len(SCHEME_PREFIX) :]
    return uri


_SECRET_QUERY_KEYS = ("password", "passwd", "pwd")


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is not None:
        uri = uri.replace(f":{parts.password}@", ":***@", 1)
    if parts.query:
        # Drivers also take the password as a query parameter (?password=...).
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        masked = "&".join(
            f"{key}={'***' if key.lower() in _SECRET_QUERY_KEYS else value}" if sep else key
            for key, sep, value in pairs
        )
        uri = uri.replace(parts.query, masked, 1)
    return uri


def redact(uri: str) -> str:
    """A URI fit for messages and logs: the password replaced by ``***``."""
    return _redact(uri)


def policy_file() -> str | None:
    """The policy file named by ``MLFLOW_GOVERNANCE_POLICY``, if set."""
    return os.environ.get(ENV_POLICY) or None


def policy_refresh_seconds() -> float:
    """How long a loaded policy is trusted before checking for a newer one."""
    raw = os.environ.get(ENV_POLICY_REFRESH)
    if not raw:
        return DEFAULT_POLICY_REFRESH_SECONDS
    try:
        return max(0.0, float(raw))
    except ValueError as exc:
        raise ConfigurationError(
            f"{ENV_POLICY_REFRESH}={raw!r} is not a number of seconds (e.g. 2 or 0.5)."
        ) from exc


def public_url() -> str | None:
    """The governance server's public base URL (``MLFLOW_GOVERNANCE_PUBLIC_URL``), if set."""
    value = os.environ.get(ENV_PUBLIC_URL, "").strip().rstrip("/")
    return value or None
