"""Governance servers for the fault tests, under the fault policy, with its writers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.faults.policy import FAULTS_POLICY
from tests.server.conftest import ADMIN, GovServer, governance_server, password_of

#: The policy's writers that drive the load (one client thread each).
WRITERS = ("ann", "ben", "cat", "dan")
#: The models they share, so their writes contend for the same rows.
MODELS = ("faults-a", "faults-b")
#: Both servers of a test share the basic-auth users and this key.
SECRET = "fault-tests-shared-secret"


@contextlib.contextmanager
def faults_server(
    workdir: Path, *, registry_db: str, auth_db: str, first: bool, workers: int = 2
) -> Iterator[GovServer]:
    """A governance server on ``registry_db`` under the fault policy.

    Args:
        workdir: Its directory (log, artifacts).
        registry_db: Plain URL of the tracking and registry database.
        auth_db: Basic-auth's users database, shared by a test's servers.
        first: Create the writers and the shared models (the first server of a test).
        workers: Uvicorn workers, so a kill ends a group of processes.
    """
    with governance_server(
        workdir,
        registry_db=registry_db,
        auth_db=auth_db,
        workers=workers,
        secret=SECRET,
        extra_env={"MLFLOW_GOVERNANCE_POLICY": str(FAULTS_POLICY)},
        create_users=False,
    ) as gov:
        if first:
            gov.create_users(WRITERS)
            for model in MODELS:
                response = gov.rest(
                    ADMIN, "POST", "/api/2.0/mlflow/registered-models/create", json={"name": model}
                )
                assert response.status_code == 200, response.text
        yield gov


def writer_credentials() -> list[tuple[str, str]]:
    """``(user, password)`` of each writer."""
    return [(user, password_of(user)) for user in WRITERS]


def register_once(gov: GovServer, user: str = WRITERS[0]) -> requests.Response:
    """One version of the first shared model, as ``user``; the raw response."""
    session = gov.session(user)
    return session.post(
        f"{gov.url}/api/2.0/mlflow/model-versions/create",
        json={"name": MODELS[0], "source": f"s3://bucket/{MODELS[0]}/model"},
        timeout=60,
    )
