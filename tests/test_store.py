"""The governed store: every write audited in its own transaction, MLflow behaviour kept."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
from mlflow.exceptions import MlflowException

from mlflow_governance.audit.query import AuditFilter, list_rows, verify
from mlflow_governance.audit.tables import audit_log


def _rows(store, **kwargs):
    with store.engine.connect() as conn:
        return list_rows(conn, AuditFilter(**kwargs))


def test_every_write_lands_in_the_audit_log_with_its_actor(store, as_user):
    as_user("alice")
    store.create_registered_model("fraud", tags=[RegisteredModelTag("team", "risk")])
    mv = store.create_model_version("fraud", "file:///m/1", tags=[ModelVersionTag("k", "v")])
    as_user("bob")
    store.transition_model_version_stage("fraud", mv.version, "staging", False)
    store.set_registered_model_alias("fraud", "champion", mv.version)
    store.set_model_version_tag("fraud", mv.version, ModelVersionTag("validated", "yes"))
    store.update_model_version("fraud", mv.version, "first")
    store.delete_registered_model_alias("fraud", "champion")

    rows = _rows(store, model="fraud")
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("alice", "create_registered_model"),
        ("alice", "create_model_version"),
        ("bob", "transition_model_version_stage"),
        ("bob", "set_registered_model_alias"),
        ("bob", "set_model_version_tag"),
        ("bob", "update_model_version"),
        ("bob", "delete_registered_model_alias"),
    ]
    assert rows[2]["stage_before"] == "None" and rows[2]["stage_after"] == "Staging"
    assert (rows[3]["alias"], rows[3]["alias_after"]) == ("champion", 1)
    assert (rows[6]["alias_before"], rows[6]["alias_after"]) == (1, None)
    assert {r["identity_source"] for r in rows} == {"asserted"}
    with store.engine.connect() as conn:
        assert verify(conn).ok


def test_model_version_is_stamped_with_the_actor(store, as_user):
    as_user("carol")
    store.create_registered_model("m")
    assert store.create_model_version("m", "file:///x").user_id == "carol"
    assert store.get_model_version("m", 1).user_id == "carol"


def test_archive_existing_versions_records_the_side_effect(store):
    store.create_registered_model("m")
    for _ in range(2):
        store.create_model_version("m", "file:///x")
    store.transition_model_version_stage("m", 1, "Production", False)
    store.transition_model_version_stage("m", 2, "Production", True)
    last_two = _rows(store, model="m")[-2:]
    assert [(r["version"], r["stage_before"], r["stage_after"]) for r in last_two] == [
        (2, "None", "Production"),
        (1, "Production", "Archived"),
    ]
    assert last_two[1]["details"] == {"side_effect": True}


def test_mlflow_validation_runs_before_governance(store):
    with pytest.raises(MlflowException, match="Invalid Model Version stage"):
        store.transition_model_version_stage("m", 1, "Prod", False)
    with pytest.raises(MlflowException) as info:
        store.create_registered_model("")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert _rows(store) == []


def test_failed_write_leaves_no_audit_row(store):
    with pytest.raises(MlflowException) as info:
        store.set_registered_model_alias("missing", "champion", 1)
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert _rows(store) == []


@pytest.mark.parametrize("action", ["create_model_version", "transition_model_version_stage"])
def test_change_is_rolled_back_when_the_audit_insert_fails(store, action):
    store.create_registered_model("m")
    store.create_model_version("m", "file:///x")
    # Make every audit insert fail from now on, as a full disk or a revoked grant would.
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.execute(
                sa.text(
                    "CREATE TRIGGER block_audit BEFORE INSERT ON governance_audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit blocked'); END"
                )
            )
        elif store.engine.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    "CREATE FUNCTION block_audit() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'audit blocked'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                sa.text(
                    "CREATE TRIGGER block_audit BEFORE INSERT ON governance_audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION block_audit()"
                )
            )
        else:
            conn.execute(
                sa.text(
                    "CREATE TRIGGER block_audit BEFORE INSERT ON governance_audit_log "
                    "FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit blocked'"
                )
            )
    try:
        with pytest.raises(MlflowException) as info:
            if action == "create_model_version":
                store.create_model_version("m", "file:///y")
            else:
                store.transition_model_version_stage("m", 1, "Production", False)
        assert "audit row" in info.value.message and "not applied" in info.value.message
        assert "INSERT INTO" not in info.value.message
        versions = store.search_model_versions("name = 'm'")
        assert [(v.version, v.current_stage) for v in versions] == [(1, "None")]
    finally:
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "DROP TRIGGER block_audit"
                    + (
                        " ON governance_audit_log"
                        if store.engine.dialect.name == "postgresql"
                        else ""
                    )
                )
            )
            if store.engine.dialect.name == "postgresql":
                conn.execute(sa.text("DROP FUNCTION block_audit()"))


def test_audit_rows_carry_the_chain(store):
    store.create_registered_model("m")
    store.create_model_version("m", "file:///x")
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).all()
    assert [r.id for r in rows] == [1, 2]
    assert rows[0].prev_hash == "0" * 64
    assert rows[1].prev_hash == rows[0].hash
