"""Several processes, one PostgreSQL database: the same answers as one process.

Server A runs four uvicorn workers, server B one; both serve the same registry and the
same basic-auth users, and take the policy from the database (``policy apply``), not a
file. A request opened through one process is approved through the other, policy
changes reach every worker within seconds, and the audit log records the users basic-auth
authenticated. This module is also the PostgreSQL end-to-end run of the stock-client flow.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from tests.databases import SERVERS
from tests.server.conftest import POLICIES, GovServer, governance_server, postgres_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.xdist_group("governance-pg")]

#: Upper bound for a policy change to reach every process (the servers re-read it every
#: second; the rest is slack for a loaded machine).
PROPAGATION_SECONDS = 30.0


@dataclass(frozen=True)
class Cluster:
    a: GovServer  # four workers
    b: GovServer  # one worker
    registry_uri: str


def _apply(registry_uri: str, path: Path, actor: str = "admin") -> None:
    from mlflow_governance.client import GovernanceClient
    from mlflow_governance.identity import Identity

    client = GovernanceClient(registry_uri, identity=Identity(actor, "asserted"))
    client.apply_policy(path)
    client.store.engine.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    postgres_or_skip()
    server = SERVERS["postgresql"]
    secret = "shared-secret-of-both-servers"
    no_file = {"MLFLOW_GOVERNANCE_POLICY": None}
    with server.database("srv_registry") as registry, server.database("srv_auth") as auth:
        _apply(f"governed+{registry}", POLICIES / "server.yaml")
        with (
            governance_server(
                tmp_path_factory.mktemp("server-a"),
                registry_db=registry,
                auth_db=auth,
                workers=4,
                secret=secret,
                extra_env=no_file,
            ) as a,
            governance_server(
                tmp_path_factory.mktemp("server-b"),
                registry_db=registry,
                auth_db=auth,
                secret=secret,
                extra_env=no_file,
                create_users=False,
            ) as b,
        ):
            yield Cluster(a, b, f"governed+{registry}")


def test_users_and_the_applied_policy_are_shared(cluster: Cluster) -> None:
    for gov in (cluster.a, cluster.b):
        me = gov.call("alice", "GET", "/whoami")
        assert (me["user"], me["groups"]) == ("alice", ["data-science"])
        document = gov.call("oscar", "GET", "/policy")
        assert document["origin"] == "database:1"
        assert document["policy"]["gates"]["production"]["approvals"]["required"] == 2


def test_a_request_opened_on_one_server_is_approved_across_both(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    name = "pg-fraud"
    with a.as_user("alice") as client:
        client.create_registered_model(name)
        mv = client.create_model_version(
            name, f"s3://bucket/{name}", tags={"validation_status": "passed"}
        )
    version = int(mv.version)

    with b.as_user("carol") as client:
        client.transition_model_version_stage(name, version, "Staging")
        with pytest.raises(MlflowException) as refused:
            client.transition_model_version_stage(name, version, "Production")
    assert refused.value.error_code == "PERMISSION_DENIED"
    request_id = int(re.search(r"Request #(\d+)", refused.value.message).group(1))  # type: ignore[union-attr]

    # Every worker of A sees the request B opened.
    seen = {
        a.call("dave", "GET", "/requests/{request_id}", request_id=request_id)["state"]
        for _ in range(12)
    }
    assert seen == {"pending"}

    first = a.call(
        "dave",
        "POST",
        "/requests/{request_id}/approve",
        request_id=request_id,
        json={"comment": "from server A"},
    )
    assert first["state"] == "pending"
    again = b.call(
        "dave",
        "POST",
        "/requests/{request_id}/approve",
        expect=403,
        request_id=request_id,
        json={},
    )
    assert "Another approver" in again["message"]  # one voice per approver, any process
    second = b.call(
        "erin",
        "POST",
        "/requests/{request_id}/approve",
        request_id=request_id,
        json={"comment": "from server B"},
    )
    assert second["state"] == "applied"

    for gov in (a, b):
        with gov.as_user("oscar") as client:
            assert client.get_model_version(name, version).current_stage == "Production"
        assert (
            gov.call("dave", "GET", "/requests/{request_id}", request_id=request_id)["state"]
            == "applied"
        )

    rows_a = a.call("dave", "GET", "/audit", params={"model": name, "limit": 100})
    rows_b = b.call("dave", "GET", "/audit", params={"model": name, "limit": 100})
    assert rows_a == rows_b
    actors = [(r["action"], r["actor"], r["decision"]) for r in rows_a]
    assert ("create_model_version", "alice", "allow") in actors
    assert ("transition_model_version_stage", "carol", "deny") in actors
    assert ("transition_model_version_stage", "erin", "allow") in actors
    assert {r["identity_source"] for r in rows_a} == {"server"}
    history = b.call("dave", "GET", "/history", params={"model": name})
    assert [e["after"] for e in history if e["kind"] == "stage"][-2:] == ["Staging", "Production"]


def test_a_policy_change_reaches_every_process_within_seconds(
    cluster: Cluster, tmp_path: Path
) -> None:
    relaxed = tmp_path / "relaxed.yaml"
    relaxed.write_text(
        (POLICIES / "server.yaml").read_text().replace("required: 2", "required: 1"),
        encoding="utf-8",
    )
    _apply(cluster.registry_uri, relaxed)

    deadline = time.monotonic() + PROPAGATION_SECONDS
    pending = {"a", "b"}
    while pending and time.monotonic() < deadline:
        for label, gov in (("a", cluster.a), ("b", cluster.b)):
            # Several calls, so that several of A's workers answer.
            answers = {
                gov.call("oscar", "GET", "/policy")["policy"]["gates"]["production"]["approvals"][
                    "required"
                ]
                for _ in range(4)
            }
            if answers == {1}:
                pending.discard(label)
    assert not pending, f"still the old policy on {pending} after {PROPAGATION_SECONDS}s"

    name = "pg-relaxed"
    with cluster.a.as_user("alice") as client:
        client.create_registered_model(name)
        mv = client.create_model_version(
            name, f"s3://bucket/{name}", tags={"validation_status": "passed"}
        )
    with cluster.b.as_user("carol") as client:
        client.transition_model_version_stage(name, mv.version, "Staging")
    created = cluster.a.call(
        "carol",
        "POST",
        "/requests",
        expect=201,
        json={"model": name, "version": mv.version, "target": "Production"},
    )
    done = cluster.b.call(
        "erin", "POST", "/requests/{request_id}/approve", request_id=created["id"], json={}
    )
    assert done["state"] == "applied"  # one approval is enough now, on every process
