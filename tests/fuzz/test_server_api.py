"""schemathesis against the live governance server, and request bodies above the limit.

One ``mlflow server --app-name governance`` on SQLite with basic auth and a body limit
of :data:`LIMIT` bytes (``MLFLOW_GOVERNANCE_MAX_BODY_BYTES``). For every route its
``openapi.json`` describes, schemathesis generates valid and invalid requests (both its
modes, derandomized) as an ordinary user (carol) and as the admin, and checks every
answer: never a server error, a status the route declares, JSON, and a body valid
against the route's schema for that status.

Bodies above the limit, to our routes and to MLflow's registry routes (a 50 MB
``create_registered_model``), are answered with HTTP 413 and MLflow's JSON error before
anything is parsed, and write nothing: no model, no audit row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from mlflow_governance.server.context import API_PREFIX
from mlflow_governance.server.openapi import build_spec
from tests.fuzz.strategies import fuzz_settings
from tests.fuzz.test_policy_loader import CRASHERS
from tests.server.conftest import ADMIN, GovServer, governance_server, register

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fuzz-server")]

#: The server's body limit: small, so the tests send little, and not the default, so
#: the setting is seen to be read.
LIMIT = 256 * 1024
#: A user the policy grants a little (stage, request), and the one it grants everything.
USERS = ("carol", ADMIN)
#: Examples per route, user and generation mode.
EXAMPLES = 12

#: Every operation of the API, from the spec the server serves (built the same way).
OPERATIONS = [
    (operation["operationId"], method.upper(), path)
    for path, item in build_spec(API_PREFIX, "basic")["paths"].items()
    for method, operation in item.items()
]
BODY_ROUTES = [
    (op_id, method, path)
    for op_id, method, path in OPERATIONS
    if "requestBody" in build_spec(API_PREFIX, "basic")["paths"][path][method.lower()]
]
MODEL = "fuzz-api"


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovServer]:
    workdir = tmp_path_factory.mktemp("fuzz-server")
    with governance_server(
        workdir, extra_env={"MLFLOW_GOVERNANCE_MAX_BODY_BYTES": str(LIMIT)}
    ) as server:
        register(server, "alice", MODEL)
        yield server


@pytest.fixture(scope="module")
def schema(gov: GovServer) -> Any:
    import schemathesis

    return schemathesis.openapi.from_dict(gov.spec())


# ----------------------------------------------------------------------- schemathesis


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize(
    ("operation_id", "method", "path"), OPERATIONS, ids=[op[0] for op in OPERATIONS]
)
def test_schemathesis_finds_nothing(
    gov: GovServer, schema: Any, operation_id: str, method: str, path: str, user: str
) -> None:
    from schemathesis import GenerationMode

    operation = schema.find_operation_by_id(operation_id)
    assert (operation.method.upper(), operation.path) == (method, path)
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    session = gov.session(user)
    checks = _checks()

    @fuzz_settings(max_examples=2 * EXAMPLES)
    @given(case=cases)
    def run(case: Any) -> None:
        case.call_and_validate(base_url=gov.url, session=session, checks=checks, timeout=60)

    run()


# ----------------------------------------------------------------------- bodies


def _audit_rows(gov: GovServer) -> list[dict[str, Any]]:
    return list(gov.call(ADMIN, "GET", "/audit", params={"limit": 5000}))


def _assert_too_large(response: requests.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert f"at most {LIMIT:,} bytes" in body["message"]
    assert "MLFLOW_GOVERNANCE_MAX_BODY_BYTES" in body["message"]


def _padded(payload: dict[str, Any], size: int) -> bytes:
    """``payload`` as JSON of exactly ``size`` bytes (the padding in a ``comment``)."""
    base = json.dumps({**payload, "comment": ""}).encode()
    return json.dumps({**payload, "comment": "x" * (size - len(base))}).encode()


@pytest.mark.parametrize(
    ("operation_id", "method", "path"), BODY_ROUTES, ids=[op[0] for op in BODY_ROUTES]
)
def test_a_body_above_the_limit_is_a_413_and_writes_nothing(
    gov: GovServer, operation_id: str, method: str, path: str
) -> None:
    before = _audit_rows(gov)
    url = gov.url + path.replace("{request_id}", "1")
    body = _padded({"model": MODEL, "version": 1, "target": "Production"}, LIMIT + 1)
    response = gov.session(ADMIN).request(
        method, url, data=body, headers={"Content-Type": "application/json"}, timeout=120
    )
    _assert_too_large(response)
    assert f"was sent {LIMIT + 1:,} bytes" in response.json()["message"]
    assert _audit_rows(gov) == before
    # The spec declares the answer (the suite's spec check, as for every other status).
    declared = gov.spec()["paths"][path][method.lower()]["responses"]
    assert "413" in declared, f"{operation_id} does not declare 413"


def test_a_body_at_the_limit_is_read_as_usual(gov: GovServer) -> None:
    body = _padded({"model": "fuzz-no-such-model", "version": 1, "target": "Production"}, LIMIT)
    response = gov.session("carol").post(
        f"{gov.url}{API_PREFIX}/requests",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    # Read and judged: the model does not exist (a 413 would mean it was never read).
    assert response.status_code == 404, response.text[:300]
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_a_50_mb_registry_write_is_a_413_and_nothing_is_written(gov: GovServer) -> None:
    before = _audit_rows(gov)
    name = "fuzz-huge"
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        response = gov.rest(
            "alice",
            "POST",
            f"{prefix}/registered-models/create",
            json={"name": name, "description": "d" * (50 * 1024 * 1024)},
        )
        _assert_too_large(response)
    got = gov.rest(ADMIN, "GET", "/api/2.0/mlflow/registered-models/get", params={"name": name})
    assert got.status_code == 404, got.text[:300]
    assert _audit_rows(gov) == before
    # Below the limit, MLflow's route works as it always did, and is audited.
    small = gov.rest(
        "alice",
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        json={"name": name, "description": "d" * (LIMIT // 2)},
    )
    assert small.status_code == 200, small.text[:300]
    rows = [r for r in _audit_rows(gov) if r not in before]
    assert [(r["action"], r["model"], r["decision"]) for r in rows] == [
        ("create_registered_model", name, "allow")
    ]
    assert gov.call(ADMIN, "POST", "/audit/verify", json={})["ok"] is True


def test_a_chunked_body_without_a_length_is_never_a_server_error(gov: GovServer) -> None:
    before = _audit_rows(gov)

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "fuzz-chunked", "description": "'
        for _ in range(8):
            yield b"c" * LIMIT
        yield b'"}'

    response = gov.session("alice").post(
        f"{gov.url}/api/2.0/mlflow/registered-models/create",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.json()["error_code"]
    assert _audit_rows(gov) == before
    assert gov.rest(ADMIN, "GET", "/health").status_code == 200


def test_the_limit_is_the_servers_setting() -> None:
    from mlflow_governance.exceptions import ConfigurationError
    from mlflow_governance.server.settings import DEFAULT_MAX_BODY_BYTES, Settings

    base = {"MLFLOW_FLASK_SERVER_SECRET_KEY": "s"}
    assert Settings.from_env(base).max_body_bytes == DEFAULT_MAX_BODY_BYTES == 1024 * 1024
    env = {**base, "MLFLOW_GOVERNANCE_MAX_BODY_BYTES": "2_000_000"}
    assert Settings.from_env(env).max_body_bytes == 2_000_000
    for bad in ("0", "-1", "1MB", "1e6", "9" * 30):
        with pytest.raises(ConfigurationError, match="MLFLOW_GOVERNANCE_MAX_BODY_BYTES"):
            Settings.from_env({**base, "MLFLOW_GOVERNANCE_MAX_BODY_BYTES": bad})


# ----------------------------------------------------------------------- policy texts


@pytest.mark.parametrize("case", sorted(CRASHERS))
def test_a_policy_text_that_crashed_the_loader_is_a_400_naming_where(
    gov: GovServer, case: str
) -> None:
    """The loader's found inputs (tests/fuzz/test_policy_loader.py), sent to the route."""
    text, line, field, message = CRASHERS[case]
    applied = gov.call(ADMIN, "GET", "/policy")
    body = gov.call(
        ADMIN, "POST", "/policy", json={"policy": text, "source": "fuzz.yaml"}, expect=400
    )
    assert body["error_code"] == "INVALID_PARAMETER_VALUE", body
    if case == "lone-surrogate":
        # The server refuses such a body before any route reads it; the loader's own
        # answer is for every other caller (the CLI, GovernanceClient, the Python API).
        assert "unpaired surrogate" in body["message"], body
    else:
        assert f"fuzz.yaml:{line}:" in body["message"], body
        assert f" {field}: {message}" in body["message"], body
    assert gov.call(ADMIN, "GET", "/policy") == applied  # nothing stored
