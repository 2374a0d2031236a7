"""Who is acting: resolved per call, never cached per process.

MLflow caches one store per registry URI, and one process (a notebook, a CI job, a server
worker) may act for several users in turn, so the actor is looked up at every write. The
server app sets it for the duration of a request through :func:`acting_as`; everywhere
else it comes from the client's environment.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

#: Identity sources recorded in the audit log.
SOURCE_SERVER = "server"
SOURCE_ASSERTED = "asserted"
SOURCE_UNAUTHENTICATED = "unauthenticated"

ANONYMOUS = "anonymous"

# Set by MLflow's ``mlflow server``/``mlflow ui`` launcher for its workers; its presence means
# the store runs inside a server process, where the OS login is the server's, not a user's.
_SERVER_ENV_MARKERS = ("_MLFLOW_SERVER_FILE_STORE", "_MLFLOW_SERVER_REGISTRY_STORE")


@dataclass(frozen=True)
class Identity:
    """The actor of one call, as the audit log records it.

    Attributes:
        user: The user name.
        source: How it was established: ``server``, ``asserted`` or ``unauthenticated``.
        groups: Groups asserted by a trusted proxy (policy groups are added at evaluation).
        client_address: The HTTP peer address, when served over HTTP.
        user_agent: The HTTP user agent, when served over HTTP.
    """

    user: str
    source: str
    groups: frozenset[str] = field(default_factory=frozenset)
    client_address: str | None = None
    user_agent: str | None = None


_current: ContextVar[Identity | None] = ContextVar("mlflow_governance_identity", default=None)


@contextlib.contextmanager
def acting_as(identity: Identity) -> Iterator[Identity]:
    """Make ``identity`` the actor of every governed call inside the block.

    Args:
        identity: The identity to act as.

    Yields:
        The same identity.
    """
    token = _current.set(identity)
    try:
        yield identity
    finally:
        _current.reset(token)


def _in_server_process() -> bool:
    return any(marker in os.environ for marker in _SERVER_ENV_MARKERS)


def _http_request_details() -> tuple[bool, str | None, str | None]:
    # Flask is only consulted when something already imported it: a plain client process
    # must not pay for importing a web framework.
    if "flask" not in sys.modules:
        return False, None, None
    import flask

    if not flask.has_request_context():
        return False, None, None
    request = flask.request
    return True, request.remote_addr, request.headers.get("User-Agent")


def current_identity() -> Identity:
    """Resolve the actor of the current call.

    Order: an identity set by :func:`acting_as` (the governance server app); inside an HTTP
    request or a server process without our app, ``anonymous`` (nobody authenticated the
    caller, and the server's OS user is not the caller); otherwise local mode:
    ``MLFLOW_TRACKING_USERNAME``, else the OS login, recorded as ``asserted``.

    Returns:
        The identity to record and to evaluate the policy against.
    """
    explicit = _current.get()
    if explicit is not None:
        return explicit
    in_request, address, agent = _http_request_details()
    if in_request or _in_server_process():
        return Identity(ANONYMOUS, SOURCE_UNAUTHENTICATED, client_address=address, user_agent=agent)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or _os_login()
    return Identity(user, SOURCE_ASSERTED)


def _os_login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container UID
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
