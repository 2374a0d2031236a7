"""Trusted-header mode: identity from a reverse proxy, believed only from trusted peers.

The server trusts ``127.0.0.1`` only. The whole of 127.0.0.0/8 is loopback, so a client
that binds its socket to ``127.0.0.2`` is a different, untrusted peer on the same machine:
whatever headers it sends, it is refused on every route, MLflow's own included. The
server runs with uvicorn's ``--no-proxy-headers`` as ``docs/server.md`` recommends, so
the peer address is the TCP peer and never a client-supplied ``X-Forwarded-For``.
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

TRUSTED = "127.0.0.1"
UNTRUSTED = "127.0.0.2"


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovServer]:
    workdir = tmp_path_factory.mktemp("governance-trusted")
    with governance_server(
        workdir,
        extra_env={
            "MLFLOW_GOVERNANCE_AUTH": "trusted-header",
            "MLFLOW_GOVERNANCE_TRUSTED_PROXIES": f"{TRUSTED}/32, ::1",
        },
        extra_args=["--uvicorn-opts=--no-proxy-headers"],
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
def test_an_untrusted_peer_is_refused_whatever_it_claims(
    gov: GovServer, method: str, path: str
) -> None:
    status, body = send(
        gov,
        method,
        path,
        source=UNTRUSTED,
        headers=as_proxy("admin", "release-managers", **{"X-Forwarded-For": TRUSTED}),
        body={} if method == "POST" else None,
    )
    assert status == 403, (path, body)
    assert body["error_code"] == "PERMISSION_DENIED"
    assert "not a trusted proxy" in body["message"]


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
