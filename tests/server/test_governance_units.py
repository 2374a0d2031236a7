"""The server's pieces without a server: settings, registration, spec, errors, peers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from flask import Flask

from mlflow_governance.exceptions import ConfigurationError
from mlflow_governance.server import blueprints
from mlflow_governance.server.auth import (
    TrustedHeaderAuthenticator,
    TrustedProxyMiddleware,
    socket_peer,
)
from mlflow_governance.server.context import EXTENSION_KEY
from mlflow_governance.server.extension import Governance, registry_endpoints
from mlflow_governance.server.openapi import build_spec
from mlflow_governance.server.settings import Settings, parse_groups, parse_networks

SECRET = {"MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32}


def _app_with_registry_routes() -> Flask:
    app = Flask("test-app")
    for name in sorted(registry_endpoints())[:3]:
        app.add_url_rule(f"/{name}", name, lambda: "ok")
    return app


def test_the_extension_registers_once_and_says_what_to_do_otherwise() -> None:
    app = _app_with_registry_routes()
    first = Governance(Settings.from_env(SECRET))
    first.init_app(app, blueprints())
    assert app.extensions[EXTENSION_KEY] is first
    assert "mlflow_governance_api.whoami" in app.view_functions
    assert "mlflow_governance_page.index" in app.view_functions
    with pytest.raises(RuntimeError, match=r"already been registered.*app\.extensions"):
        Governance(Settings.from_env(SECRET)).init_app(app, blueprints())


def test_the_extension_needs_mlflows_registry_routes() -> None:
    with pytest.raises(ConfigurationError, match=r"mlflow\.server\.app"):
        Governance(Settings.from_env(SECRET)).init_app(Flask("bare"), blueprints())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLFLOW_GOVERNANCE_AUTH": "oauth"}, "valid: basic, trusted-header"),
        ({"MLFLOW_GOVERNANCE_AUTH": "trusted-header"}, "MLFLOW_GOVERNANCE_TRUSTED_PROXIES"),
        (
            {"MLFLOW_GOVERNANCE_AUTH": "trusted-header", "MLFLOW_GOVERNANCE_TRUSTED_PROXIES": "x"},
            "neither an IP address nor a CIDR network",
        ),
    ],
)
def test_invalid_settings_are_refused_with_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({**SECRET, **env})


def test_the_secret_key_is_required() -> None:
    with pytest.raises(ConfigurationError, match="MLFLOW_FLASK_SERVER_SECRET_KEY"):
        Settings.from_env({})


def test_trusted_peers() -> None:
    settings = Settings.from_env(
        {
            **SECRET,
            "MLFLOW_GOVERNANCE_AUTH": "Trusted-Header",
            "MLFLOW_GOVERNANCE_TRUSTED_PROXIES": " 127.0.0.1, 10.1.0.0/16 ,::1",
        }
    )
    assert settings.auth == "trusted-header"
    assert [str(n) for n in settings.trusted_proxies] == ["127.0.0.1/32", "10.1.0.0/16", "::1/128"]
    for peer in ("127.0.0.1", "10.1.200.3", "::1", "::ffff:10.1.0.9"):
        assert settings.is_trusted_peer(peer), peer
    for peer in ("127.0.0.2", "10.2.0.1", "", None, "not-an-ip", "::2"):
        assert not settings.is_trusted_peer(peer), peer
    assert parse_networks("") == ()
    assert parse_groups(" a, ,b,a ") == frozenset({"a", "b"})
    assert parse_groups(None) == frozenset()


@pytest.mark.parametrize("mode", ["basic", "trusted-header"])
def test_the_openapi_document_is_valid(mode: str) -> None:
    from openapi_spec_validator import validate

    spec = build_spec("/prefix/api/2.0/mlflow-governance", mode)
    validate(spec)
    assert spec["security"] == [{"basicAuth" if mode == "basic" else "trustedProxy": []}]
    for path, operations in spec["paths"].items():
        assert path.startswith("/prefix/api/2.0/mlflow-governance/")
        for operation in operations.values():
            assert "401" in operation["responses"], path


def _trusted_app() -> Flask:
    """A Flask app with a failing registry route, governed in trusted-header mode."""
    app = _app_with_registry_routes()
    failing = sorted(registry_endpoints())[3]

    def explode() -> str:
        raise RuntimeError("secret detail /etc/passwd")

    app.add_url_rule("/explode", failing, explode)
    app.add_url_rule("/elsewhere", "not_governed", explode)
    Governance(
        Settings.from_env(
            {
                **SECRET,
                "MLFLOW_GOVERNANCE_AUTH": "trusted-header",
                "MLFLOW_GOVERNANCE_TRUSTED_PROXIES": "127.0.0.1",
            }
        )
    ).init_app(app, blueprints())
    return app


def test_an_unexpected_error_on_a_governed_route_is_json_without_a_traceback() -> None:
    client = _trusted_app().test_client()
    proxy = {"environ_base": {"REMOTE_ADDR": "127.0.0.1"}, "headers": {"X-Forwarded-User": "u"}}
    response = client.get("/explode", **proxy)  # type: ignore[arg-type]
    assert response.status_code == 500
    assert response.is_json
    assert response.get_json()["error_code"] == "INTERNAL_ERROR"
    assert "secret detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    # Routes the app does not govern keep Flask's own answer.
    other = client.get("/elsewhere", **proxy)  # type: ignore[arg-type]
    assert other.status_code == 500 and not other.is_json


class _Transport:
    def __init__(self, peer: object) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> object:
        return self.peer if name == "peername" else None


class _Cycle:
    """Stands for uvicorn's per-request object: ``receive`` is bound to it."""

    def __init__(self, peer: object) -> None:
        self.transport = _Transport(peer)

    async def receive(self) -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}


def test_the_socket_peer_comes_from_the_connection_not_the_scope() -> None:
    assert socket_peer(_Cycle(("127.0.0.3", 51000)).receive) == ("127.0.0.3", 51000)
    assert socket_peer(_Cycle(("::1", 51000, 0, 0)).receive) == ("::1", 51000)
    assert socket_peer(_Cycle("/run/mlflow.sock").receive) is None  # a Unix socket

    async def bare() -> dict[str, object]:
        return {}

    assert socket_peer(bare) is None


def _run_middleware(peer: object, scope_client: tuple[str, int]) -> tuple[int, dict[str, Any]]:
    settings = Settings.from_env(
        {
            **SECRET,
            "MLFLOW_GOVERNANCE_AUTH": "trusted-header",
            "MLFLOW_GOVERNANCE_TRUSTED_PROXIES": "127.0.0.3",
        }
    )
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["client"] = scope["client"]
        await send({"type": "http.response.start", "status": 204, "headers": []})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = TrustedProxyMiddleware(app, TrustedHeaderAuthenticator(settings))
    scope = {
        "type": "http",
        "path": "/api/2.0/mlflow/registered-models/search",
        # What uvicorn leaves in the scope after believing X-Forwarded-For.
        "client": scope_client,
        "headers": [(b"x-forwarded-user", b"admin"), (b"x-forwarded-for", b"127.0.0.3")],
    }
    asyncio.run(middleware(scope, _Cycle(peer).receive, send))
    return int(sent[0]["status"]), seen


def test_the_middleware_judges_the_socket_peer_and_puts_it_back_in_the_scope() -> None:
    status, seen = _run_middleware(("127.0.0.1", 40000), ("127.0.0.3", 0))
    assert status == 403 and not seen
    status, seen = _run_middleware(("127.0.0.3", 40000), ("127.0.0.3", 40000))
    assert status == 204 and seen["client"] == ("127.0.0.3", 40000)
    status, seen = _run_middleware("unknown", ("127.0.0.3", 0))
    assert status == 403 and not seen  # a connection it cannot see is not believed
