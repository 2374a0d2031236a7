"""Hostile input for the server tests: names no database column takes, and what to try.

An ordinary user (mallory, whom the policy grants nothing) sends registry writes and reads
whose model name is 10,000 characters long or contains NUL. Whatever the database, the
answer must be one of MLflow's JSON errors with a 4xx status: the refusal (and its audit
row) must survive the name, and a crash is never the refusal.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.server.conftest import GovServer

#: Hostile model names, by the id tests show.
NAMES = {"10k-chars": "n" * 10_000, "nul": "fraud\x00model"}

RM = "/api/2.0/mlflow/registered-models"
MV = "/api/2.0/mlflow/model-versions"

#: What the attacker tries, by id: (method, path, payload builder from the hostile name).
OPERATIONS: dict[str, tuple[str, str, Any]] = {
    "create-model": ("POST", f"{RM}/create", lambda name: {"name": name}),
    "set-model-tag": (
        "POST",
        f"{RM}/set-tag",
        lambda name: {"name": name, "key": "k", "value": "v"},
    ),
    "get-model": ("GET", f"{RM}/get", lambda name: {"name": name}),
    "create-version": (
        "POST",
        f"{MV}/create",
        lambda name: {"name": name, "source": "s3://bucket/hostile/model"},
    ),
    "transition": (
        "POST",
        f"{MV}/transition-stage",
        lambda name: {"name": name, "version": "1", "stage": "Production"},
    ),
}

ATTACKER = "mallory"
CLIENT_ERRORS = (400, 403, 404)


def attempt(gov: GovServer, operation: str, name: str) -> requests.Response:
    """Send ``operation`` on model ``name`` as the attacker."""
    method, path, payload = OPERATIONS[operation]
    body = payload(name)
    if method == "GET":
        return gov.rest(ATTACKER, method, path, params=body)
    return gov.rest(ATTACKER, method, path, json=body)


def denials(gov: GovServer) -> int:
    """How many refusals of the attacker the audit log holds (read as the policy admin)."""
    rows = gov.call(
        "admin",
        "GET",
        "/audit",
        params={"actor": ATTACKER, "decision": "deny", "limit": 5000},
    )
    return len(rows)


def assert_refused_cleanly(gov: GovServer, operation: str, name: str) -> None:
    """The attempt is answered with a 4xx JSON error, and its refusal is audited."""
    before = denials(gov)
    response = attempt(gov, operation, name)
    # Whatever the status, the body is MLflow's JSON error and carries no traceback.
    assert response.headers.get("Content-Type", "").startswith("application/json"), (
        response.status_code,
        response.text[:300],
    )
    body = response.json()
    assert set(body) >= {"error_code", "message"}, body
    assert "Traceback" not in response.text
    assert response.status_code in CLIENT_ERRORS, (response.status_code, body["message"][:300])
    if response.status_code == 403:
        assert denials(gov) > before


def cases() -> list[Any]:
    """Every (operation, name) pair as pytest params, with ids like ``create-model-nul``."""
    return [
        pytest.param(operation, name, id=f"{operation}-{label}")
        for operation in OPERATIONS
        for label, name in NAMES.items()
    ]
