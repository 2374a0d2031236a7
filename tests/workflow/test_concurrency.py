"""The last approval applies a move exactly once, even when approvers race.

Approvers start together on a ``threading.Barrier``, each with a client of its own, on
PostgreSQL and MariaDB (SQLite serialises every writer anyway). Whatever the
interleaving, the version enters Production once, by one audited transition naming the
request, and the losers are told the request moved on (``RESOURCE_CONFLICT``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from mlflow.exceptions import MlflowException

from mlflow_governance.client import GovernanceClient
from mlflow_governance.identity import SOURCE_ASSERTED, Identity
from tests.workflow.conftest import Registry, make_registry

pytestmark = pytest.mark.parametrize("backend", ["postgresql", "mysql"])


@pytest.fixture
def lab(registry_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """lab.yaml on the server backend: exp-1 version 1 by ana, a request to Production."""
    reg = make_registry(registry_uri, monkeypatch, None)
    reg.seed("exp-1", creator="ana")
    reg.use_policy("lab")
    yield reg
    reg.store.engine.dispose()


def _race(reg: Registry, request_id: int, approvers: tuple[str, ...]) -> Counter[str]:
    """Approve at the same moment, one thread and one client per approver."""
    clients = {
        user: GovernanceClient(reg.uri, identity=Identity(user, SOURCE_ASSERTED))
        for user in approvers
    }
    barrier = threading.Barrier(len(approvers))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def approve(user: str) -> None:
        barrier.wait(timeout=60)
        try:
            outcome = clients[user].approve(request_id)["state"]
        except MlflowException as exc:
            outcome = exc.error_code
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=approve, args=(user,)) for user in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def _applied_once(reg: Registry, request_id: int) -> None:
    request = reg.request(request_id)
    assert request["state"] == "applied"
    assert len(request["approvals"]) == 2
    entered = [
        row
        for row in reg.audit(model="exp-1", action="transition_model_version_stage")
        if row["stage_after"] == "Production" and row["decision"] == "allow"
    ]
    assert [(row["version"], row["request_id"]) for row in entered] == [(1, request_id)]
    assert entered[0]["actor"] == request["applied_by"]
    assert reg.stages("exp-1") == {1: "Production"}
    reg.assert_explained("exp-1")


def test_three_approvers_race_for_two_slots(lab: Registry) -> None:
    rid = int(lab.run("ana", lambda: lab.gov.request("exp-1", 1, "Production"))["id"])
    outcomes = _race(lab, rid, ("lea", "lou", "lin"))
    # Two votes count (one of them applies); the third finds the request closed.
    assert outcomes["RESOURCE_CONFLICT"] == 1, outcomes
    assert sum(outcomes.values()) == 3
    assert set(outcomes) <= {"pending", "applied", "RESOURCE_CONFLICT"}
    _applied_once(lab, rid)


def test_two_approvers_race_for_the_last_slot(lab: Registry) -> None:
    rid = int(lab.run("ana", lambda: lab.gov.request("exp-1", 1, "Production"))["id"])
    assert lab.run("lea", lambda: lab.gov.approve(rid))["state"] == "pending"
    outcomes = _race(lab, rid, ("lou", "lin"))
    assert outcomes == Counter({"applied": 1, "RESOURCE_CONFLICT": 1}), outcomes
    _applied_once(lab, rid)
