"""Who is calling: MLflow's basic-auth, or a reverse proxy's headers from a trusted peer.

Why registry routes skip basic-auth's authorization
---------------------------------------------------
MLflow's basic-auth app does two things in one ``before_request`` hook: it authenticates
the caller (users, passwords, admin) and then authorizes the route against its own
per-resource permissions. For experiments and runs that is what we want. For the model
registry it is not: the governance policy alone decides what a user may do with models
(SPEC section 2), and basic-auth's ``default_permission = READ`` would refuse every
registry write the policy grants.

The extension therefore registers its own ``before_request`` hook *ahead* of
basic-auth's. For a governed route (MLflow's model-registry endpoints, the model-version
artifact download and the governance API and page) that hook authenticates with
basic-auth's own :func:`mlflow.server.auth.authenticate_request` (so the configured
``authorization_function``, password hashing and credential cache all apply), sets the
actor, and serves the request itself through Flask's public ``dispatch_request()``.
Flask documents that a ``before_request`` function returning a response ends request
pre-processing, so basic-auth's hook never runs for those routes, while its
``after_request`` hook still does (it keeps withholding run ids a user may not read).
Every other route falls through to basic-auth unchanged. Nothing in MLflow is patched,
and no basic-auth grants are written, so an admin cannot accidentally give or take
per-model rights through basic-auth's permission API.

Skipping basic-auth's validators must not skip the one decision of theirs that is not
about a model: under ``--enable-workspaces`` MLflow keeps users out of workspaces they
hold no role in. Before serving a governed route the hook therefore asks basic-auth, in
the request's workspace, whether the user may read (gets, searches, governance reads) or
use (every write) its registry (:mod:`mlflow_governance.server.mlflow_permissions`), and
answers 403 otherwise; the policy then decides on the model.

Alternatives rejected: granting every user ``MANAGE`` on ``registered_model:*`` in
basic-auth's store (state outside the policy that an admin can revoke, and new users
need it too); replacing basic-auth's hook in ``app.before_request_funcs`` (Flask
documents that structure as internal); patching basic-auth's validator tables.

Trusted-header mode
-------------------
``X-Forwarded-User`` and ``X-Forwarded-Groups`` are believed only when the TCP peer is
one of ``MLFLOW_GOVERNANCE_TRUSTED_PROXIES``; any other peer is refused with 403 and a
trusted peer without the user header with 401. Under uvicorn the check also runs as ASGI
middleware in front of MLflow's native FastAPI routes (artifacts, gateway, OTLP, jobs),
which never reach Flask's hooks.

The peer judged is the socket's, never an address a client wrote. uvicorn's proxy-header
support (on unless ``--no-proxy-headers``) replaces the ASGI scope's ``client`` with the
``X-Forwarded-For`` value of any connection from its ``--forwarded-allow-ips`` (127.0.0.1
and ::1 by default), so any local process could claim to be a trusted proxy. The
middleware therefore reads the peer from the connection itself (:func:`socket_peer`) and
puts it back in the scope, so Flask's ``remote_addr`` below it is the real peer too. A
server whose connection it cannot see is refused rather than believed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from flask import Response, request

from mlflow_governance.identity import SOURCE_SERVER, Identity
from mlflow_governance.server._http import BASIC_CHALLENGE, error_body, error_response
from mlflow_governance.server.settings import (
    ENV_TRUSTED_PROXIES,
    GROUPS_HEADER,
    USER_HEADER,
    Settings,
    parse_groups,
)

#: Paths answered without authentication in every mode (load balancers' health checks).
UNPROTECTED_PATHS = ("/health",)

_MAX_USER_LENGTH = 256


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was not let in, as the HTTP answer it gets."""

    status: int
    error_code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        """The Flask response."""
        return error_response(self.error_code, self.message, self.status, self.headers)


def _request_identity(user: str, groups: frozenset[str] = frozenset()) -> Identity:
    return Identity(
        user=user,
        source=SOURCE_SERVER,
        groups=groups,
        client_address=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
    )


class BasicAuthenticator:
    """Authenticates with MLflow's basic-auth app (its users, passwords and admin).

    Identity headers a client sends are ignored: the actor is the user whose password
    basic-auth verified, and nothing else.
    """

    mode = "basic"

    def authenticate(self) -> Identity | Response:
        """Authenticate the current Flask request.

        Returns:
            The caller's identity, or the response to send instead (a JSON 401 with the
            basic-auth challenge, or whatever a custom authorization function returned).
        """
        from mlflow.server.auth import authenticate_request

        result = authenticate_request()
        if isinstance(result, Response):
            if result.status_code == 401:
                return AuthFailure(
                    401,
                    "UNAUTHENTICATED",
                    "You are not authenticated: send the user name and password of an MLflow "
                    "user (HTTP basic auth, e.g. MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD).",
                    dict(BASIC_CHALLENGE),
                ).response()
            return result
        username = getattr(result, "username", None)
        if not username:
            return AuthFailure(401, "UNAUTHENTICATED", "No user name.", {}).response()
        return _request_identity(str(username))


class TrustedHeaderAuthenticator:
    """Believes a reverse proxy's ``X-Forwarded-User`` when the peer is a trusted proxy.

    Args:
        settings: The server settings (the trusted proxy networks).
    """

    mode = "trusted-header"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check(self, peer: str | None, user: str | None, groups: str | None) -> AuthFailure | None:
        """Decide on a request from its peer address and identity headers.

        Returns:
            None when the request may proceed, else the failure to answer with.
        """
        if not self.settings.is_trusted_peer(peer):
            return AuthFailure(
                403,
                "PERMISSION_DENIED",
                f"Refused: {peer or 'an unknown peer'} is not a trusted proxy. This server "
                f"believes {USER_HEADER} only from {ENV_TRUSTED_PROXIES} "
                f"({', '.join(str(n) for n in self.settings.trusted_proxies)}); "
                "connect through the authenticating proxy.",
            )
        name = (user or "").strip()
        if not name:
            return AuthFailure(
                401,
                "UNAUTHENTICATED",
                f"You are not authenticated: the proxy sent no {USER_HEADER} header.",
            )
        if len(name) > _MAX_USER_LENGTH or any(ord(ch) < 32 for ch in name):
            return AuthFailure(400, "INVALID_PARAMETER_VALUE", f"Malformed {USER_HEADER} header.")
        return None

    def authenticate(self) -> Identity | Response:
        """Authenticate the current Flask request from the proxy's headers."""
        failure = self.check(
            request.remote_addr,
            request.headers.get(USER_HEADER),
            request.headers.get(GROUPS_HEADER),
        )
        if failure is not None:
            return failure.response()
        user = str(request.headers.get(USER_HEADER, "")).strip()
        identity = _request_identity(user, parse_groups(request.headers.get(GROUPS_HEADER)))
        # The trusted proxy appends the address that connected to it; earlier entries
        # came from the client and prove nothing.
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        if forwarded[-1]:
            identity = replace(identity, client_address=forwarded[-1][:64])
        return identity


Authenticator = BasicAuthenticator | TrustedHeaderAuthenticator

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


def socket_peer(receive: Callable[[], Awaitable[Any]]) -> tuple[str, int] | None:
    """The TCP peer of the connection an ASGI request arrived on, from the socket.

    uvicorn calls the application with a ``receive`` bound to the connection's protocol
    object, which in each of its HTTP and WebSocket implementations keeps the asyncio
    transport as ``transport``; the transport reports the peer the kernel saw. The
    ASGI scope's ``client`` cannot be used: uvicorn's proxy-header support may have
    replaced it with whatever the client wrote in ``X-Forwarded-For``.

    Args:
        receive: The ``receive`` callable the server passed to the application.

    Returns:
        ``(host, port)``, or None when the connection cannot be seen (another server, a
        Unix socket).
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    get_extra_info = getattr(transport, "get_extra_info", None)
    if not callable(get_extra_info):
        return None
    peer = get_extra_info("peername")
    if isinstance(peer, tuple | list) and len(peer) >= 2 and isinstance(peer[0], str):
        return peer[0], int(peer[1])
    return None


class TrustedProxyMiddleware:
    """ASGI middleware refusing requests that did not come through a trusted proxy.

    Under uvicorn, MLflow serves some routes (artifacts, gateway, OTLP, jobs) with FastAPI
    directly; they never pass Flask's hooks, so the peer and header check runs here too.

    Args:
        app: The ASGI application to protect.
        authenticator: The trusted-header authenticator.
        unprotected: Paths answered without a check (health).
    """

    def __init__(
        self,
        app: ASGIApp,
        authenticator: TrustedHeaderAuthenticator,
        unprotected: tuple[str, ...] = UNPROTECTED_PATHS,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.unprotected = unprotected

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.unprotected:
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers", [])
        }
        peer = socket_peer(receive)
        if peer is None:
            failure: AuthFailure | None = AuthFailure(
                403,
                "PERMISSION_DENIED",
                "Refused: the server cannot see the TCP peer of this connection, so it cannot "
                "tell a trusted proxy from anyone else. Serve it with MLflow's default server "
                "(uvicorn).",
            )
        else:
            # Undo uvicorn's X-Forwarded-For rewriting for everything below (Flask too).
            scope["client"] = peer
            failure = self.authenticator.check(
                peer[0], headers.get(USER_HEADER.lower()), headers.get(GROUPS_HEADER.lower())
            )
        if failure is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = error_body(failure.error_code, failure.message)
        await send(
            {
                "type": "http.response.start",
                "status": failure.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def __getattr__(self, name: str) -> Any:
        # Let uvicorn and tests reach the wrapped application's attributes (state, routes).
        return getattr(self.app, name)
