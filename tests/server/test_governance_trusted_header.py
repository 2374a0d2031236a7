"""Trusted-header mode: identity from a reverse proxy, believed only from trusted peers.

The server trusts one proxy, ``127.0.0.3``. The whole of 127.0.0.0/8 is loopback, so a
client that binds its socket to another loopback address is a different peer on the same
machine: ``127.0.0.2`` is an untrusted one, and so is ``127.0.0.1``, which is where an
attacker's process on the server's host connects from by default.

The server is started the way ``docs/server.md`` warns against: without uvicorn's
``--no-proxy-headers``. uvicorn then replaces the peer address of any connection from
127.0.0.1 with that connection's ``X-Forwarded-For`` value, so a local process could
claim to be the proxy; the governance app judges the socket's peer instead, and these
tests show the claim gets nowhere.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.server.conftest import API, GovServer, check_against_spec, governance_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("governance-trusted")]

TRUSTED = "127.0.0.3"
UNTRUSTED = "127.0.0.2"
#: Where a local process connects from, and an address uvicorn takes X-Forwarded-For from.
LOCAL = "127.0.0.1"


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovServer]:
    workdir = tmp_path_factory.mktemp("governance-trusted")
    with governance_server(
        workdir,
        extra_env={
            "MLFLOW_GOVERNANCE_AUTH": "trusted-header",
            "MLFLOW_GOVERNANCE_TRUSTED_PROXIES": f"{TRUSTED}/32",
        },
        # No --no-proxy-headers, on purpose: see the module docstring.
    ) as running:
        yield running


def send(
    gov: GovServer,
    method: str,
    path: str,
    *,
    source: str = TRUSTED,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    """One request from ``source`` (a loopback address of our choice)."""
    parts = urlsplit(gov.url)
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=120, source_address=(source, 0)
    )
    payload = None if body is None else json.dumps(body)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode("utf-8", "replace")


def as_proxy(user: str, groups: str = "", **extra: str) -> dict[str, str]:
    headers = {"X-Forwarded-User": user, **extra}
    if groups:
        headers["X-Forwarded-Groups"] = groups
    return headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{API}/whoami"),
        ("GET", f"{API}/requests"),
        ("POST", f"{API}/requests/1/approve"),
        ("GET", "/governance/"),
        ("POST", "/api/2.0/mlflow/registered-models/create"),
        ("GET", "/api/2.0/mlflow/experiments/search?max_results=1"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts"),  # served by FastAPI, not Flask
        ("GET", "/"),
    ],
)
@pytest.mark.parametrize("source", [UNTRUSTED, LOCAL])
def test_an_untrusted_peer_is_refused_whatever_it_claims(
    gov: GovServer, method: str, path: str, source: str
) -> None:
    """From 127.0.0.1 the claim ``X-Forwarded-For: <the proxy>`` is what uvicorn believes."""
    status, body = send(
        gov,
        method,
        path,
        source=source,
        headers=as_proxy("admin", "release-managers", **{"X-Forwarded-For": TRUSTED}),
        body={} if method == "POST" else None,
    )
    assert status == 403, (path, body)
    assert body["error_code"] == "PERMISSION_DENIED"
    # The refusal names the socket's peer, not the address the client claimed.
    assert body["message"].startswith(f"Refused: {source} is not a trusted proxy"), body


def test_a_local_process_claiming_to_be_the_proxy_cannot_write(gov: GovServer) -> None:
    claim = as_proxy("admin", "release-managers", **{"X-Forwarded-For": f"198.51.100.9, {TRUSTED}"})
    status, body = send(
        gov,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        source=LOCAL,
        headers=claim,
        body={"name": "spoofed-by-a-local-process"},
    )
    assert status == 403, body
    status, found = send(
        gov,
        "GET",
        "/api/2.0/mlflow/registered-models/get?name=spoofed-by-a-local-process",
        headers=as_proxy("admin"),
    )
    assert status == 404, found


def test_health_answers_everyone(gov: GovServer) -> None:
    assert send(gov, "GET", "/health", source=UNTRUSTED)[0] == 200


def test_a_trusted_peer_without_a_user_is_unauthenticated(gov: GovServer) -> None:
    for path in (f"{API}/whoami", "/api/2.0/mlflow/registered-models/search"):
        status, body = send(gov, "GET", path)
        assert status == 401, body
        assert body["error_code"] == "UNAUTHENTICATED"


def test_the_proxys_user_and_groups_are_the_actor(gov: GovServer) -> None:
    status, me = send(
        gov,
        "GET",
        f"{API}/whoami",
        headers=as_proxy(
            "bob", "release-managers, sre", **{"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
        ),
    )
    assert status == 200
    check_against_spec(gov_spec(gov), "GET", f"{API}/whoami", status, me)
    assert (me["user"], me["identity_source"], me["auth"]) == ("bob", "server", "trusted-header")
    assert me["groups"] == ["release-managers", "sre"]  # from the header; bob is not in the policy
    assert me["client_address"] == "203.0.113.9"  # what the trusted proxy saw

    name = "trusted-fraud"
    for path, body in (
        ("/api/2.0/mlflow/registered-models/create", {"name": name}),
        (
            "/api/2.0/mlflow/model-versions/create",
            {
                "name": name,
                "source": f"s3://bucket/{name}",
                "tags": [{"key": "validation_status", "value": "passed"}],
            },
        ),
    ):
        status, answer = send(gov, "POST", path, headers=as_proxy("alice"), body=body)
        assert status == 200, answer
    status, refused = send(
        gov,
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        headers=as_proxy("carol"),
        body={"name": name, "alias": "champion", "version": "1"},
    )
    assert status == 403 and "Request #" in refused["message"], refused
    request_id = int(refused["message"].split("Request #", 1)[1].split()[0].rstrip(".:"))

    # Groups from the header count for approvals: bob and zoe are approvers by header only.
    for approver in ("bob", "zoe"):
        status, view = send(
            gov,
            "POST",
            f"{API}/requests/{request_id}/approve",
            headers=as_proxy(approver, "release-managers"),
            body={},
        )
        assert status == 200, view
    assert view["state"] == "applied"
    status, without_group = send(gov, "GET", f"{API}/audit", headers=as_proxy("zoe"))
    assert status == 403, without_group

    status, rows = send(
        gov,
        "GET",
        f"{API}/audit?model={name}&limit=100",
        headers=as_proxy("auditor", "release-managers"),
    )
    assert status == 200
    check_against_spec(gov_spec(gov), "GET", f"{API}/audit", status, rows)
    actors = {(r["action"], r["actor"]) for r in rows}
    assert ("create_registered_model", "alice") in actors
    assert ("approve_request", "bob") in actors and ("approve_request", "zoe") in actors
    applied = [r for r in rows if r["alias_after"] == 1]
    assert applied and applied[-1]["actor"] == "zoe"
    assert {r["identity_source"] for r in rows} == {"server"}


_SPEC: dict[str, Any] = {}


def gov_spec(gov: GovServer) -> dict[str, Any]:
    if not _SPEC:
        from openapi_spec_validator import validate

        status, spec = send(gov, "GET", f"{API}/openapi.json", headers=as_proxy("alice"))
        assert status == 200
        validate(spec)
        assert spec["security"] == [{"trustedProxy": []}]
        _SPEC.update(spec)
    return _SPEC


def test_the_page_works_behind_the_proxy(gov: GovServer) -> None:
    status, page = send(gov, "GET", "/governance/?state=all", headers=as_proxy("dave", "ops"))
    assert status == 200
    assert "dave" in page and "Promotion requests" in page
    status, refused = send(
        gov, "POST", "/governance/requests/1/reject", headers=as_proxy("dave", "release-managers")
    )
    assert status == 403 and "CSRF token" in refused


def test_the_request_page_shows_run_data_to_readers_of_the_model_only(gov: GovServer) -> None:
    """No MLflow permissions in this mode: the policy's read on the model decides."""
    name = "trusted-run-data"
    alice = as_proxy("alice")
    status, experiment = send(
        gov, "POST", "/api/2.0/mlflow/experiments/create", headers=alice, body={"name": name}
    )
    assert status == 200, experiment
    status, run = send(
        gov,
        "POST",
        "/api/2.0/mlflow/runs/create",
        headers=alice,
        body={"experiment_id": experiment["experiment_id"]},
    )
    assert status == 200, run
    run_id = run["run"]["info"]["run_id"]
    status, _ = send(
        gov,
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        headers=alice,
        body={"run_id": run_id, "key": "accuracy", "value": 0.987654, "timestamp": 1, "step": 0},
    )
    assert status == 200
    for path, body in (
        ("/api/2.0/mlflow/registered-models/create", {"name": name}),
        (
            "/api/2.0/mlflow/model-versions/create",
            {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id},
        ),
    ):
        status, answer = send(gov, "POST", path, headers=alice, body=body)
        assert status == 200, answer
    status, created = send(
        gov,
        "POST",
        f"{API}/requests",
        headers=as_proxy("carol"),
        body={"model": name, "version": 1, "target": "Production"},
    )
    assert status == 201, created

    status, page = send(
        gov, "GET", f"/governance/requests/{created['id']}", headers=as_proxy("oscar")
    )
    assert status == 200
    assert run_id in page and "0.987654" in page
    status, refused = send(
        gov, "GET", f"/governance/requests/{created['id']}", headers=as_proxy("mallory")
    )
    assert status == 403
    assert run_id not in refused and "0.987654" not in refused
