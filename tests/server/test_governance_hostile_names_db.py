"""Hostile model names against PostgreSQL and MariaDB/MySQL registries, which refuse them.

PostgreSQL rejects NUL in text; both reject a name longer than a ``VARCHAR(256)`` column.
A refusal whose audit row quotes such a name is where a crash would hide, so each
attempt by an ordinary user (``tests/server/hostile.py``) must still be answered with a
4xx JSON error and be audited. One governance server per database, each on a fresh
database of its own.

Until the audit writer stored such names in a form the database takes, most of these
refusals ended in HTTP 500; every case now passes on both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.databases import SERVERS
from tests.server import hostile
from tests.server.conftest import GovServer, database_or_skip, governance_server, register

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("governance-hostile-db"),
]

BACKENDS = {"postgresql": pytest.mark.postgres, "mysql": pytest.mark.mysql}


@pytest.fixture(scope="module")
def gov(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GovServer]:
    backend = request.param
    database_or_skip(backend)
    with (
        SERVERS[backend].database("hostile_registry") as registry,
        governance_server(
            tmp_path_factory.mktemp(f"hostile-{backend}"), registry_db=registry
        ) as running,
    ):
        register(running, "alice", "hostile-target", stage=None)
        yield running


def _cases() -> list[Any]:
    return [
        pytest.param(backend, *case.values, id=f"{backend}-{case.id}", marks=mark)
        for backend, mark in BACKENDS.items()
        for case in hostile.cases()
    ]


@pytest.mark.parametrize(("gov", "operation", "name"), _cases(), indirect=["gov"])
def test_a_hostile_model_name_is_refused_cleanly(gov: GovServer, operation: str, name: str) -> None:
    hostile.assert_refused_cleanly(gov, operation, name)


@pytest.mark.parametrize(
    ("gov", "label"),
    [
        pytest.param(backend, label, id=f"{backend}-{label}", marks=mark)
        for backend, mark in BACKENDS.items()
        for label in sorted(hostile.NAMES)
    ],
    indirect=["gov"],
)
def test_renaming_to_a_hostile_name_is_refused_cleanly(gov: GovServer, label: str) -> None:
    """Refused on the model being renamed, which mallory may not edit: no hostile row."""
    before = hostile.denials(gov)
    response = gov.rest(
        hostile.ATTACKER,
        "POST",
        f"{hostile.RM}/rename",
        json={"name": "hostile-target", "new_name": hostile.NAMES[label]},
    )
    assert response.status_code == 403, response.text[:300]
    assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert hostile.denials(gov) > before
