"""How a command or ``GovernanceClient`` reaches the governance service.

Remote mode (recommended for people and pipelines): an ``http://`` or ``https://`` URI,
and every action goes to the governance server, which decides who the caller is. Local
mode (for administrators): a ``governed+…`` registry URI, and this process opens the
database and acts under the name it asserts.

Which URI, first match wins:

1. an explicit registry URI (``--registry-uri``): local for ``governed+…``, remote for
   ``http(s)://…``;
2. an explicit tracking URI (``--tracking-uri``), which must be ``http(s)://…``;
3. ``MLFLOW_REGISTRY_URI``: local for ``governed+…``, remote for ``http(s)://…``;
4. ``MLFLOW_TRACKING_URI`` when it is ``http(s)://…`` (or ``governed+…``).
"""

from __future__ import annotations

import os

from mlflow_governance.access.local import LocalAccess
from mlflow_governance.access.remote import RemoteAccess
from mlflow_governance.exceptions import ConfigurationError
from mlflow_governance.identity import Identity

Access = LocalAccess | RemoteAccess

_HTTP = ("http://", "https://")
_GOVERNED = "governed+"


def _is_http(uri: str) -> bool:
    return uri.lower().startswith(_HTTP)


def _is_governed(uri: str) -> bool:
    return uri.lower().startswith(_GOVERNED)


def resolve_uri(registry_uri: str | None = None, tracking_uri: str | None = None) -> str:
    """The URI the actions go to (see the module's order).

    Raises:
        ConfigurationError: Nothing usable is configured, or a URI is neither a governed
            registry nor a server.
    """
    if registry_uri:
        if _is_governed(registry_uri) or _is_http(registry_uri):
            return registry_uri
        raise ConfigurationError(
            f"--registry-uri {registry_uri!r} is neither a governed registry "
            "(governed+sqlite:///…, governed+postgresql://…) nor a governance server "
            "(http(s)://host:port)."
        )
    if tracking_uri:
        if _is_http(tracking_uri):
            return tracking_uri
        raise ConfigurationError(
            f"--tracking-uri {tracking_uri!r} is not a server URL: give http(s)://host:port "
            "of the governance server, or --registry-uri governed+… for local mode."
        )
    env_registry = os.environ.get("MLFLOW_REGISTRY_URI") or ""
    if _is_governed(env_registry) or _is_http(env_registry):
        return env_registry
    env_tracking = os.environ.get("MLFLOW_TRACKING_URI") or ""
    if _is_http(env_tracking) or _is_governed(env_tracking):
        return env_tracking
    raise ConfigurationError(
        "No governance server or governed registry is configured. Give the server's URL "
        "(recommended): --tracking-uri http://host:5000 or MLFLOW_TRACKING_URI; or, for local "
        "administration, --registry-uri governed+<database URL> or MLFLOW_REGISTRY_URI."
    )


def connect(
    registry_uri: str | None = None,
    tracking_uri: str | None = None,
    identity: Identity | None = None,
) -> Access:
    """Reach the governance service the URIs name.

    Args:
        registry_uri: An explicit registry URI (``governed+…`` or ``http(s)://…``).
        tracking_uri: An explicit server URL.
        identity: Local mode only: act as this identity. A server decides the identity
            itself, so it cannot be chosen remotely.

    Raises:
        ConfigurationError: See :func:`resolve_uri`; or ``identity`` with a server URI.
    """
    uri = resolve_uri(registry_uri, tracking_uri)
    if _is_http(uri):
        if identity is not None:
            raise ConfigurationError(
                "A governance server decides who the caller is: an identity cannot be given "
                "in remote mode; set MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN."
            )
        return RemoteAccess(uri)
    env_tracking = os.environ.get("MLFLOW_TRACKING_URI")
    local_tracking = env_tracking if env_tracking and not _is_governed(env_tracking) else None
    return LocalAccess(uri, identity, local_tracking)


__all__ = ["Access", "LocalAccess", "RemoteAccess", "connect", "resolve_uri"]
