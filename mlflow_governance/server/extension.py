"""The Flask extension: authentication, the actor of each request, and our blueprints.

:class:`Governance` follows the Flask-extension pattern: configure it, then
``init_app(app)``; it registers itself in ``app.extensions["mlflow_governance"]`` and
refuses to be registered twice. :meth:`Governance.compose` then puts MLflow's basic-auth
(or the trusted-proxy check) around the app and returns what the server should run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import InternalServerError

from mlflow_governance.exceptions import ConfigurationError
from mlflow_governance.identity import SOURCE_SERVER, Identity, acting_as
from mlflow_governance.server._http import error_response, request_json
from mlflow_governance.server.auth import (
    UNPROTECTED_PATHS,
    Authenticator,
    BasicAuthenticator,
    TrustedHeaderAuthenticator,
    TrustedProxyMiddleware,
)
from mlflow_governance.server.bounds import registry_problem
from mlflow_governance.server.context import EXTENSION_KEY, static_prefixed
from mlflow_governance.server.mlflow_permissions import READ, USE, workspace_refusal
from mlflow_governance.server.settings import AUTH_BASIC, Settings

if TYPE_CHECKING:
    from mlflow_governance.store import GovernedStore
    from mlflow_governance.workflow.promotion import Workflow


#: MLflow's model-version artifact download (a registry read outside the proto services).
_EXTRA_REGISTRY_ENDPOINTS = ("serve_model_version_artifact",)
#: MLflow's registry handlers that only read (gets, searches); the others change something.
_REGISTRY_READ_PREFIXES = ("_get_", "_search_")
#: Governance routes that touch no workspace's models: who you are, the rules, the spec.
_WORKSPACE_NEUTRAL = ("whoami", "policy", "openapi", "static")

_ACTING = "_mlflow_governance_acting"


def registry_endpoints() -> frozenset[str]:
    """Flask endpoint names of MLflow's model-registry REST routes (REST and ajax paths)."""
    from mlflow.protos.model_registry_pb2 import ModelRegistryService
    from mlflow.server.handlers import get_handler, get_service_endpoints

    names = {
        handler.__name__
        for _, handler, _ in get_service_endpoints(ModelRegistryService, get_handler)
    }
    return frozenset(names) | frozenset(_EXTRA_REGISTRY_ENDPOINTS)


class Governance:
    """The governance server extension for MLflow's Flask app.

    Args:
        settings: The configuration; read from the environment at ``init_app`` if omitted.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.authenticator: Authenticator | None = None
        self._governed: frozenset[str] = frozenset()
        self._registry: frozenset[str] = frozenset()
        self._workspace_scoped: frozenset[str] = frozenset()
        self._unprotected: tuple[str, ...] = UNPROTECTED_PATHS
        self._workflows: dict[int, Workflow] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ setup

    def init_app(self, app: Flask, blueprints: Sequence[tuple[Blueprint, str]]) -> None:
        """Register the governance API, the page and the authentication hook on ``app``.

        Configuration keys read (environment variables, see
        :mod:`mlflow_governance.server.settings`): ``MLFLOW_GOVERNANCE_AUTH``,
        ``MLFLOW_GOVERNANCE_TRUSTED_PROXIES``, ``MLFLOW_FLASK_SERVER_SECRET_KEY``; MLflow's
        own ``_MLFLOW_STATIC_PREFIX`` places the routes under ``--static-prefix``.

        Args:
            app: MLflow's Flask app (``mlflow.server.app``) or a Flask app with its routes.
            blueprints: Our routes and where to mount them (see
                :func:`mlflow_governance.server.blueprints`).

        Raises:
            RuntimeError: An instance is already registered on this app.
            ConfigurationError: The settings are invalid.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'Governance' instance has already been registered on this Flask app. "
                "Use app.extensions['mlflow_governance'] instead of registering another, "
                "and call create_app() once per process."
            )
        self.settings = self.settings or Settings.from_env()
        if self.settings.auth == AUTH_BASIC:
            self.authenticator = BasicAuthenticator()
        else:
            self.authenticator = TrustedHeaderAuthenticator(self.settings)
        app.secret_key = self.settings.secret_key
        for blueprint, prefix in blueprints:
            app.register_blueprint(blueprint, url_prefix=static_prefixed(prefix))
        registry = registry_endpoints()
        if not registry.intersection(app.view_functions):
            raise ConfigurationError(
                "None of MLflow's model-registry routes is registered on this app; pass "
                "MLflow's server app (mlflow.server.app) to init_app."
            )
        ours = {
            name
            for name in app.view_functions
            if name.startswith(tuple(f"{blueprint.name}." for blueprint, _ in blueprints))
        }
        self._registry = registry
        self._governed = registry | ours
        self._workspace_scoped = registry | {
            name for name in ours if name.rsplit(".", 1)[-1] not in _WORKSPACE_NEUTRAL
        }
        self._unprotected = tuple(static_prefixed(p) for p in UNPROTECTED_PATHS)
        app.before_request(self._before_request)
        app.teardown_request(self._teardown_request)
        # Flask calls this for every unhandled exception; other routes keep Flask's page.
        app.register_error_handler(InternalServerError, self._internal_error)
        app.extensions[EXTENSION_KEY] = self

    def compose(self, app: Flask, *, asgi: bool) -> Any:
        """Wrap ``app`` with the authentication layer and return what the server runs.

        Basic mode applies MLflow's basic-auth app (``mlflow.server.auth.create_app``),
        which also wraps the app in FastAPI under uvicorn; trusted-header mode wraps it in
        FastAPI under uvicorn and puts :class:`TrustedProxyMiddleware` in front.

        Args:
            app: The app ``init_app`` was called with.
            asgi: Whether the server is uvicorn (an ASGI app is returned).
        """
        if isinstance(self.authenticator, BasicAuthenticator):
            try:
                import mlflow.server.auth as basic_auth
            except ImportError as exc:
                raise ConfigurationError(
                    f"MLFLOW_GOVERNANCE_AUTH=basic uses MLflow's basic-auth app, which needs "
                    f"its extra: pip install 'mlflow[auth]' ({exc})."
                ) from None
            from mlflow.server.auth.config import read_auth_config

            from mlflow_governance.server.bootstrap import bootstrap_lock

            with bootstrap_lock(read_auth_config().database_uri):
                served = basic_auth.create_app(app)
            # Runs after basic-auth's hook, for the routes basic-auth authorizes: the actor
            # of anything they read from the registry (e.g. GraphQL) is the same user.
            app.before_request(self._identify_after_basic_auth)
            return served
        assert isinstance(self.authenticator, TrustedHeaderAuthenticator)
        if not asgi:
            return app
        from mlflow.server.fastapi_app import create_fastapi_app

        return TrustedProxyMiddleware(
            create_fastapi_app(app), self.authenticator, self._unprotected
        )

    # ------------------------------------------------------------------ per request

    def _before_request(self) -> Any:
        if request.path in self._unprotected:
            return None
        governed = request.endpoint in self._governed
        if isinstance(self.authenticator, BasicAuthenticator) and not governed:
            return None  # basic-auth's own hook authenticates and authorizes this route
        assert self.authenticator is not None
        result = self.authenticator.authenticate()
        if isinstance(result, Response):
            return result
        self._act_as(result)
        refusal = self._refusal(result.user) if governed else None
        if refusal is not None:
            return refusal
        if isinstance(self.authenticator, BasicAuthenticator):
            # Serve governed routes here so basic-auth's authorization (registered after
            # this hook) does not run for them: the policy decides (see the auth module).
            return current_app.dispatch_request()
        return None

    def _refusal(self, user: str) -> Response | None:
        """What MLflow's workspace boundary or the integer bounds say before the handler."""
        endpoint = request.endpoint or ""
        if isinstance(self.authenticator, BasicAuthenticator) and (
            endpoint in self._workspace_scoped
        ):
            reads = (
                endpoint.startswith(_REGISTRY_READ_PREFIXES)
                or endpoint in _EXTRA_REGISTRY_ENDPOINTS
                if endpoint in self._registry
                else request.method in ("GET", "HEAD")
            )
            message = workspace_refusal(user, READ if reads else USE)
            if message is not None:
                return error_response("PERMISSION_DENIED", message)
        if endpoint in self._registry:
            problem = registry_problem(endpoint, request.args, request_json())
            if problem is not None:
                return error_response("INVALID_PARAMETER_VALUE", problem)
        return None

    def _internal_error(self, exc: InternalServerError) -> Response | InternalServerError:
        # Flask has logged the exception with its traceback; the caller gets MLflow's JSON
        # error without it (a traceback tells an attacker more than it helps a user).
        if request.endpoint not in self._governed:
            return exc
        return error_response(
            "INTERNAL_ERROR",
            "The server failed to handle this request; its log has the details.",
            500,
        )

    def _identify_after_basic_auth(self) -> None:
        if g.get(_ACTING) is not None:
            return
        user = g.get("mlflow_authenticated_user")
        if user:
            self._act_as(
                Identity(
                    str(user),
                    SOURCE_SERVER,
                    client_address=request.remote_addr,
                    user_agent=request.headers.get("User-Agent"),
                )
            )

    def _act_as(self, identity: Identity) -> None:
        context = acting_as(identity)
        context.__enter__()
        setattr(g, _ACTING, context)
        g.mlflow_authenticated_user = identity.user

    def _teardown_request(self, _exc: BaseException | None) -> None:
        context = g.pop(_ACTING, None)
        if context is not None:
            context.__exit__(None, None, None)

    # ------------------------------------------------------------------ services

    @property
    def auth_mode(self) -> str:
        """``basic`` or ``trusted-header``."""
        assert self.settings is not None
        return self.settings.auth

    def store(self) -> GovernedStore:
        """The governed registry store MLflow's handlers use in this process.

        Raises:
            ConfigurationError: The server's registry store is not a governed one.
        """
        from mlflow.server.handlers import _get_model_registry_store

        from mlflow_governance.store import GovernedStore

        store = _get_model_registry_store()
        if not isinstance(store, GovernedStore):
            raise ConfigurationError(
                "The governance server needs a governed registry: start it with "
                "--registry-store-uri governed+<database URL>."
            )
        return store

    def workflow(self) -> Workflow:
        """The approval workflow on :meth:`store` (one per store and process)."""
        from mlflow_governance.workflow.promotion import Workflow

        store = self.store()
        with self._lock:
            flow = self._workflows.get(id(store))
            if flow is None or flow.store is not store:
                flow = self._workflows[id(store)] = Workflow(store)
            return flow
