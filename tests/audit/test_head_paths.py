"""The shortcuts a governed move takes to the chain head keep the chain linear.

A move locks its model before deciding. On SQLite that lock is the chain head itself,
read then and reused by the audit append. On PostgreSQL and MySQL the append locks the
head itself, late, so another writer may move it while the move decides; the append
then links after that writer's row. Either way the chain verifies and its ids stay
gapless.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from mlflow_governance.audit.query import verify
from mlflow_governance.audit.writer import DECISION_ALLOW, HEAD_TAKEN, AuditEntry, append
from mlflow_governance.identity import SOURCE_ASSERTED, Identity
from mlflow_governance.state import lock_model

WHO = Identity("alice", SOURCE_ASSERTED)


def _ids_and_ok(store: Any) -> tuple[list[int], bool]:
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM governance_audit_log"))]
        return sorted(ids), verify(conn).ok


def test_a_head_moved_while_a_move_decides_is_linked_after(
    store: Any, backend: str, as_user: Any
) -> None:
    as_user("alice")
    store.create_registered_model("fraud")
    store.create_model_version("fraud", "s3://m/1")
    if backend == "sqlite":
        pytest.skip("SQLite locks the head when it reads it: nobody can move it in between")
    with store.ManagedSessionMaker(read_only=False) as session:
        locked = lock_model(session, store, "fraud", 1)
        assert locked is not None and locked.version(1) is not None
        assert HEAD_TAKEN not in session.info  # only SQLite takes the head with the model
        # Another writer appends (and commits) while this transaction decides.
        with store.engine.begin() as other:
            append(other, [AuditEntry("other_writer", WHO, DECISION_ALLOW, model="x")])
        rows = append(session, [AuditEntry("late_writer", WHO, DECISION_ALLOW, model="y")])
    ids, ok = _ids_and_ok(store)
    assert ok
    assert ids == list(range(1, len(ids) + 1))
    assert rows[0]["id"] == ids[-1]


def test_the_head_read_with_the_model_is_used_once(store: Any, as_user: Any) -> None:
    as_user("alice")
    store.create_registered_model("fraud")
    store.create_model_version("fraud", "s3://m/1")
    with store.ManagedSessionMaker(read_only=False) as session:
        lock_model(session, store, "fraud", 1)
        first = append(session, [AuditEntry("first", WHO, DECISION_ALLOW, model="fraud")])
        assert HEAD_TAKEN not in session.info
        second = append(session, [AuditEntry("second", WHO, DECISION_ALLOW, model="fraud")])
    assert second[0]["prev_hash"] == first[0]["hash"]
    ids, ok = _ids_and_ok(store)
    assert ok and ids == list(range(1, len(ids) + 1))


def test_a_rolled_back_transaction_leaves_no_head_behind(store: Any, as_user: Any) -> None:
    as_user("alice")
    store.create_registered_model("fraud")
    store.create_model_version("fraud", "s3://m/1")
    with store.ManagedSessionMaker(read_only=False) as session:
        lock_model(session, store, "fraud", 1)
        session.rollback()
        assert HEAD_TAKEN not in session.info
        append(session, [AuditEntry("after_rollback", WHO, DECISION_ALLOW, model="fraud")])
    ids, ok = _ids_and_ok(store)
    assert ok and ids == list(range(1, len(ids) + 1))
