"""A governed write chosen as a deadlock's victim runs again as a whole, audit rows included.

The deadlock is real: another connection holds the audit chain head and then asks for the
model's row, which the governed write holds while it waits for the head. The database
breaks the cycle by rolling the governed write back; the caller still sees one success,
with one version and one audit row.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from mlflow_governance.audit.query import verify
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.identity import SOURCE_ASSERTED, Identity, acting_as

MODEL = "deadlocked"
TIMEOUT = 120


def _hold_head_then_want_model(
    url: str, backend: str, at_head: threading.Event
) -> tuple[threading.Thread, list[str]]:
    """The other side of the cycle, in a thread; its list says what happened to it."""
    outcome: list[str] = []
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    def run() -> None:
        try:
            with engine.connect() as conn:
                if backend == "postgresql":
                    # The governed write starts waiting first; with the default timeout it
                    # runs the deadlock check first and is the one rolled back.
                    conn.execute(sa.text("SET deadlock_timeout = '60s'"))
                else:
                    # InnoDB rolls back the transaction that changed fewer rows: make this
                    # one the heavier.
                    conn.execute(sa.text("CREATE TEMPORARY TABLE ballast (n INT)"))
                    conn.execute(
                        sa.text("INSERT INTO ballast (n) VALUES (:n)"),
                        [{"n": n} for n in range(200)],
                    )
                conn.execute(sa.text("SELECT seq FROM governance_audit_head FOR UPDATE"))
                ready.set()
                if not at_head.wait(TIMEOUT):
                    outcome.append("the governed write never reached the chain head")
                    return
                conn.execute(
                    sa.text("UPDATE registered_models SET description = 'x' WHERE name = :n"),
                    {"n": MODEL},
                )
                conn.commit()
                outcome.append("committed")
        except Exception as exc:  # reported by the test
            outcome.append(f"failed: {exc}")
        finally:
            engine.dispose()

    ready = threading.Event()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(TIMEOUT), outcome
    return thread, outcome


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_a_deadlocked_write_runs_again_whole(db_url_for: Any, backend: str) -> None:
    from mlflow_governance.store import GovernedStore

    url = db_url_for(backend)
    store = GovernedStore(url)
    with acting_as(Identity("alice", SOURCE_ASSERTED)):
        store.create_registered_model(MODEL)
    at_head = threading.Event()
    head_updates: list[int] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = statement.upper()
        # Whatever statement takes the head's lock: an UPDATE, a locking read or a CTE.
        if "GOVERNANCE_AUDIT_HEAD" in text and ("FOR UPDATE" in text or "UPDATE " in text):
            head_updates.append(1)
            at_head.set()

    sa.event.listen(store.engine, "before_cursor_execute", before)
    other, outcome = _hold_head_then_want_model(url, backend, at_head)
    try:
        with acting_as(Identity("alice", SOURCE_ASSERTED)):
            created = store.create_model_version(MODEL, "s3://models/deadlocked")
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", before)
        other.join(TIMEOUT)
    assert outcome == ["committed"], outcome
    assert int(created.version) == 1
    assert len(head_updates) >= 2, "the governed write was not the deadlock's victim"
    with store.engine.connect() as conn:
        versions = conn.execute(
            sa.text("SELECT version FROM model_versions WHERE name = :n"), {"n": MODEL}
        ).all()
        rows = conn.execute(
            sa.select(audit_log.c.version, audit_log.c.decision).where(
                audit_log.c.action == "create_model_version"
            )
        ).all()
        assert verify(conn).ok
    assert [v[0] for v in versions] == [1]
    assert [tuple(r) for r in rows] == [(1, "allow")]
