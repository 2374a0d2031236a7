"""Ways around the gate, tried as an attacker with an ordinary account would try them.

Each test drives the stock ``MlflowClient`` (and the workflow's Python API where a request
is needed) on SQLite, PostgreSQL and MariaDB under ``policies/bypass.yaml``: the gate
``production`` guards Production and ``@champion`` of ``fraud-*`` and ``o'brien-*``;
alice and bob build, bob may delete, dave and erin approve, sam may move anything, root
is an admin. Every attempt must be refused with an audited deny row and leave the
registry as it was, while the legitimate path still works.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from mlflow_governance.exceptions import Conflict
from mlflow_governance.identity import SOURCE_ASSERTED, Identity
from mlflow_governance.workflow.promotion import Workflow
from mlflow_governance.workflow.tables import requests
from tests.workflow import assert_refused, request_id_in
from tests.workflow.conftest import Registry, make_registry


@pytest.fixture
def reg(registry_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A fresh governed registry on each backend, under bypass.yaml."""
    registry = make_registry(registry_uri, monkeypatch, None)
    registry.use_policy("bypass")
    yield registry
    registry.store.engine.dispose()


def _approved(reg: Registry, model: str, version: int, to: str = "Production") -> int:
    """alice asks for the move, dave and erin approve it (apply is manual)."""
    rid = int(reg.run("alice", lambda: reg.gov.request(model, version, to))["id"])
    reg.run("dave", lambda: reg.gov.approve(rid))
    assert reg.run("erin", lambda: reg.gov.approve(rid))["state"] == "approved"
    return rid


def _denied(reg: Registry, action: str) -> list[dict]:
    return [r for r in reg.audit(action=action) if r["decision"] == "deny"]


# ---------------------------------------------------------------------- identity


def test_an_approval_does_not_carry_over_to_a_model_made_again(reg: Registry) -> None:
    reg.seed("fraud-x", stages=["Staging"])
    rid = _approved(reg, "fraud-x", 1)
    reg.run("root", lambda: reg.mlflow.delete_registered_model("fraud-x"))
    # Deleting the model ends its requests, with an audit row in the same transaction.
    assert reg.request(rid)["state"] == "cancelled"
    assert [r["request_id"] for r in reg.audit(action="cancel_request")] == [rid]
    reg.seed("fraud-x", creator="bob", stages=["Staging"])  # a new, unreviewed v1
    refused = reg.fails(
        "alice", lambda: reg.mlflow.transition_model_version_stage("fraud-x", 1, "Production")
    )
    assert refused.error_code == "PERMISSION_DENIED"
    assert request_id_in(refused.message) != rid
    assert reg.stages("fraud-x") == {1: "Staging"}


def test_a_request_bound_to_another_version_never_applies(reg: Registry) -> None:
    """Even a request left approved (e.g. filed before requests were bound) is refused."""
    reg.seed("fraud-x", stages=["Staging"])
    rid = _approved(reg, "fraud-x", 1)
    reg.run("root", lambda: reg.mlflow.rename_registered_model("fraud-x", "fraud-old"))
    assert reg.request(rid)["state"] == "cancelled"
    reg.seed("fraud-x", creator="bob", stages=["Staging"])

    def reopen() -> None:  # behind the plugin's back
        with reg.store.engine.begin() as conn:
            conn.execute(sa.update(requests).where(requests.c.id == rid).values(state="approved"))

    reopen()
    # The workflow's own apply refuses it, and cancels it for good.
    with pytest.raises(Conflict, match="no longer exists"):
        Workflow(reg.store).apply(Identity("alice", SOURCE_ASSERTED), rid)
    assert reg.request(rid)["state"] == "cancelled"
    reopen()
    # The stock client's move does not find it: it names another version's identity.
    refused = reg.fails(
        "alice", lambda: reg.mlflow.transition_model_version_stage("fraud-x", 1, "Production")
    )
    assert refused.error_code == "PERMISSION_DENIED"
    assert request_id_in(refused.message) != rid
    assert reg.stages("fraud-x") == {1: "Staging"}


def test_rollback_never_restores_a_version_number_reused_by_a_new_model(reg: Registry) -> None:
    reg.seed("fraud-r", stages=["Production"])
    reg.seed("fraud-r", stages=["Production"])  # v2 archives v1: v1 is the previous holder
    # protect_delete holds for admins too: Production is emptied before the model goes.
    reg.run("root", lambda: reg.mlflow.transition_model_version_stage("fraud-r", 2, "Archived"))
    reg.run("root", lambda: reg.mlflow.delete_registered_model("fraud-r"))
    reg.seed("fraud-r", creator="bob")  # new v1, never reviewed
    reg.seed("fraud-r", creator="bob", stages=["Production"])  # new v2 (seeded, audited)
    refused = reg.fails("root", lambda: reg.gov.rollback("fraud-r", stage="Production"))
    assert refused.error_code == "RESOURCE_CONFLICT", refused.message
    assert reg.stages("fraud-r") == {1: "None", 2: "Production"}


@pytest.mark.parametrize("spelling", ["FRAUD-X", "Fráud-x", "fraud-X"])
def test_a_name_spelled_otherwise_reaches_no_model_past_the_gate(
    reg: Registry, backend: str, spelling: str
) -> None:
    reg.seed("fraud-x", stages=["Staging"])
    reg.seed("sandbox-1", stages=["Staging"])
    # sam may move anything the gate does not cover.
    reg.run("sam", lambda: reg.mlflow.transition_model_version_stage("sandbox-1", 1, "Production"))
    refused = reg.fails(
        "sam", lambda: reg.mlflow.transition_model_version_stage(spelling, 1, "Production")
    )
    if backend == "mysql":  # the database takes the spelling for fraud-x: the gate holds
        assert refused.error_code == "PERMISSION_DENIED", refused.message
        assert "gate production" in refused.message
    else:  # a different name, and no such model
        assert refused.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert reg.stages("fraud-x") == {1: "Staging"}


@pytest.mark.parametrize("alias", ["CHAMPION", "Champion", "chámpion"])
def test_an_alias_spelled_otherwise_is_the_gated_alias(
    reg: Registry, backend: str, alias: str
) -> None:
    reg.seed("fraud-x", stages=["Staging"])
    reg.seed("fraud-x", stages=["Staging"], aliases=["champion"])
    if backend != "mysql":
        # Elsewhere the spelling names another alias, which no gate guards.
        reg.run("sam", lambda: reg.mlflow.set_registered_model_alias("fraud-x", alias, 1))
        assert reg.alias("fraud-x", "champion") == 2
        return
    for target in (1, 2):  # moving the existing alias, or re-pointing it at its holder
        refused = reg.fails(
            "sam", lambda t=target: reg.mlflow.set_registered_model_alias("fraud-x", alias, t)
        )
        assert refused.error_code == "PERMISSION_DENIED", refused.message
    assert reg.alias("fraud-x", "champion") == 2
    # A new alias that the database would compare equal to a gated one is gated too.
    reg.run("root", lambda: reg.mlflow.delete_registered_model_alias("fraud-x", "champion"))
    refused = reg.fails("sam", lambda: reg.mlflow.set_registered_model_alias("fraud-x", alias, 1))
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    assert reg.alias("fraud-x", "champion") is None


# ---------------------------------------------------------------------- hidden moves


def test_a_rename_cannot_carry_a_version_past_the_gate(reg: Registry) -> None:
    reg.seed("sandbox-m", stages=["Staging"])
    reg.run("sam", lambda: reg.mlflow.transition_model_version_stage("sandbox-m", 1, "Production"))
    refused = reg.fails("alice", lambda: reg.mlflow.rename_registered_model("sandbox-m", "fraud-m"))
    assert_refused(
        refused,
        actor="alice",
        action="edit",
        rule="gates.production",
        allow="promote it through gate production",
    )
    assert reg.stages("sandbox-m") == {1: "Production"}
    assert len(_denied(reg, "rename_registered_model")) == 1


def test_a_rename_cannot_take_a_version_out_from_behind_the_gate(reg: Registry) -> None:
    reg.seed("fraud-y", stages=["Production"])
    refused = reg.fails("alice", lambda: reg.mlflow.rename_registered_model("fraud-y", "sandbox-y"))
    assert refused.error_code == "PERMISSION_DENIED"
    assert "transition:Production" in refused.message
    # An admin may take it out; coming back is then carrying it past the gate.
    reg.run("root", lambda: reg.mlflow.rename_registered_model("fraud-y", "sandbox-y"))
    back = reg.fails("alice", lambda: reg.mlflow.rename_registered_model("sandbox-y", "fraud-y"))
    assert back.error_code == "PERMISSION_DENIED" and "past the gate" in back.message
    assert reg.stages("sandbox-y") == {1: "Production"}


def test_a_rename_needs_rights_on_the_new_name(reg: Registry) -> None:
    reg.seed("sandbox-z")
    refused = reg.fails("alice", lambda: reg.mlflow.rename_registered_model("sandbox-z", "other-z"))
    assert refused.error_code == "PERMISSION_DENIED" and "new name" in refused.message
    reg.run("alice", lambda: reg.mlflow.rename_registered_model("sandbox-z", "sandbox-zz"))


def test_a_rename_within_the_same_gate_is_allowed_and_ends_open_requests(reg: Registry) -> None:
    reg.seed("fraud-a", stages=["Production"])
    reg.seed("fraud-a", stages=["Staging"])
    rid = int(reg.run("alice", lambda: reg.gov.request("fraud-a", 2, "Production"))["id"])
    reg.run("alice", lambda: reg.mlflow.rename_registered_model("fraud-a", "fraud-b"))
    assert reg.stages("fraud-b") == {1: "Production", 2: "Staging"}
    request = reg.request(rid)
    assert request["state"] == "cancelled" and "renamed" in request["closed_reason"]


def test_archiving_other_versions_needs_what_moving_them_needs(reg: Registry) -> None:
    reg.seed("fraud-a", stages=["Production"])
    reg.seed("fraud-a", stages=["Staging"])
    rid = _approved(reg, "fraud-a", 2)  # approved without archiving
    refused = reg.fails(
        "alice",
        lambda: reg.mlflow.transition_model_version_stage(
            "fraud-a", 2, "Production", archive_existing_versions=True
        ),
    )
    assert refused.error_code == "PERMISSION_DENIED"
    assert f"request #{rid} was approved without archiving" in refused.message
    assert reg.stages("fraud-a") == {1: "Production", 2: "Staging"}
    assert reg.request(rid)["state"] == "approved"
    # Applied as approved, the request moves v2 and leaves v1 where it is.
    reg.run("alice", lambda: reg.mlflow.transition_model_version_stage("fraud-a", 2, "Production"))
    assert reg.stages("fraud-a") == {1: "Production", 2: "Production"}
    assert reg.request(rid)["state"] == "applied"


def test_deleting_a_version_that_holds_a_gated_alias_needs_the_alias_right(reg: Registry) -> None:
    reg.seed("fraud-d", aliases=["champion"])
    refused = reg.fails("bob", lambda: reg.mlflow.delete_model_version("fraud-d", 1))
    assert refused.error_code == "PERMISSION_DENIED" and "alias:champion" in refused.message
    assert reg.alias("fraud-d", "champion") == 1
    refused = reg.fails("bob", lambda: reg.mlflow.delete_registered_model("fraud-d"))
    assert "alias:champion" in refused.message
    assert reg.alias("fraud-d", "champion") == 1


@pytest.mark.parametrize("name", ["o'brien-model", 'o"brien-model', "o\\'brien-model"])
def test_protect_delete_holds_for_every_legal_name(reg: Registry, name: str) -> None:
    reg.seed(name, stages=["Production"])
    for call in (
        lambda: reg.mlflow.delete_registered_model(name),
        lambda: reg.mlflow.delete_model_version(name, 1),
    ):
        refused = reg.fails("bob", call)
        assert refused.error_code == "PERMISSION_DENIED", refused.message
    assert reg.stages(name) == {1: "Production"}
    assert {r["rule"] for r in _denied(reg, "delete_registered_model")} == {"protect_delete"}


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize("version", [2**63, 2**64 + 1, -(2**70), "9" * 40])
def test_versions_beyond_any_column_are_a_clear_invalid_parameter(
    reg: Registry, version: object
) -> None:
    reg.seed("fraud-x")
    calls = (
        lambda: reg.mlflow.get_model_version("fraud-x", version),
        lambda: reg.mlflow.transition_model_version_stage("fraud-x", version, "Staging"),
        lambda: reg.mlflow.set_model_version_tag("fraud-x", version, "k", "v"),
        lambda: reg.mlflow.set_registered_model_alias("fraud-x", "dev", version),
        lambda: reg.mlflow.delete_model_version("fraud-x", version),
    )
    for call in calls:
        refused = reg.fails("alice", call)
        assert refused.error_code == "INVALID_PARAMETER_VALUE", refused.message


@pytest.mark.parametrize("name", ["m" * 10_000, "fraud-\x00-x", "fraud-\u2603-" + "x" * 300])
def test_a_refusal_is_audited_whatever_the_name(reg: Registry, name: str) -> None:
    from mlflow.entities.model_registry import RegisteredModelTag

    from mlflow_governance.audit.query import verify

    # The stock client reads the model first; the store refuses the write itself too.
    refused = reg.fails("zed", lambda: reg.mlflow.set_registered_model_tag(name, "k", "v"))
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    refused = reg.fails(
        "zed", lambda: reg.store.set_registered_model_tag(name, RegisteredModelTag("k", "v"))
    )
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    refused = reg.fails("zed", lambda: reg.store.create_model_version(name, "file:///m"))
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    denied = [r["action"] for r in reg.audit(decision="deny")]
    assert denied == ["read", "set_registered_model_tag", "create_model_version"]
    with reg.store.engine.connect() as conn:
        assert verify(conn).ok


# ---------------------------------------------------------------------- trusted facts


def test_a_checked_tag_is_written_only_by_its_trusted_writers(reg: Registry) -> None:
    from mlflow.entities.model_registry import ModelVersionTag

    reg.use_policy("trusted")
    reg.seed("fraud-x")
    attempts = (
        lambda: reg.mlflow.set_model_version_tag("fraud-x", 1, "validation_status", "passed"),
        lambda: reg.mlflow.set_model_version_tag("fraud-x", 1, "Validation_Status", "passed"),
        lambda: reg.mlflow.delete_model_version_tag("fraud-x", 1, "validation_status"),
        lambda: reg.store.create_model_version(
            "fraud-x", "file:///m", tags=[ModelVersionTag("validation_status", "passed")]
        ),
    )
    for attempt in attempts:
        refused = reg.fails("alice", attempt)
        assert refused.error_code == "PERMISSION_DENIED", refused.message
        assert "set_by" in refused.message and "validator" in refused.message
    assert reg.stages("fraud-x") == {1: "None"}  # no version 2 was created
    reg.run("alice", lambda: reg.mlflow.set_model_version_tag("fraud-x", 1, "notes", "ok"))
    reg.run(
        "val", lambda: reg.mlflow.set_model_version_tag("fraud-x", 1, "validation_status", "passed")
    )
    denied = [r["action"] for r in reg.audit(decision="deny")]
    assert denied.count("set_model_version_tag") == 2
    assert denied.count("create_model_version") == 1


def test_a_rename_does_not_launder_a_tag_set_where_nobody_checked_it(reg: Registry) -> None:
    reg.use_policy("trusted")
    reg.seed("sandbox-x")
    reg.run(
        "alice",
        lambda: reg.mlflow.set_model_version_tag("sandbox-x", 1, "validation_status", "passed"),
    )
    refused = reg.fails("alice", lambda: reg.mlflow.rename_registered_model("sandbox-x", "fraud-x"))
    assert refused.error_code == "PERMISSION_DENIED" and "validation_status" in refused.message
    assert reg.stages("sandbox-x") == {1: "None"}


def test_history_ends_for_any_chain_of_renames(reg: Registry) -> None:
    """A model renamed to its own name, and back and forth, keeps a finite history."""
    from mlflow_governance.audit.history import history

    reg.seed("sandbox-h", stages=["Staging"])
    for old, new in [
        ("sandbox-h", "sandbox-h"),
        ("sandbox-h", "sandbox-i"),
        ("sandbox-i", "sandbox-h"),
        ("sandbox-h", "sandbox-h"),
    ]:
        reg.run("alice", lambda o=old, n=new: reg.mlflow.rename_registered_model(o, n))
    with reg.store.engine.connect() as conn:
        events = history(conn, "sandbox-h")
    assert [(e.version, e.name) for e in events if e.kind == "stage"] == [
        (1, "None"),
        (1, "Staging"),
    ]
