"""The server's pieces without a server: settings, the extension's registration, the spec."""

from __future__ import annotations

import pytest
from flask import Flask

from mlflow_governance.exceptions import ConfigurationError
from mlflow_governance.server.extension import EXTENSION_KEY, Governance, registry_endpoints
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
    first.init_app(app)
    assert app.extensions[EXTENSION_KEY] is first
    assert "mlflow_governance_api.whoami" in app.view_functions
    assert "mlflow_governance_page.index" in app.view_functions
    with pytest.raises(RuntimeError, match=r"already been registered.*app\.extensions"):
        Governance(Settings.from_env(SECRET)).init_app(app)


def test_the_extension_needs_mlflows_registry_routes() -> None:
    with pytest.raises(ConfigurationError, match=r"mlflow\.server\.app"):
        Governance(Settings.from_env(SECRET)).init_app(Flask("bare"))


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
