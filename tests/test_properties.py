"""Random operation sequences under team.yaml never get around the production gate.

Hypothesis generates sequences of operations (register a version, move it to a stage,
set or delete an alias, open, approve, reject or cancel a request, roll back, delete a
version), each by a random user of examples/policies/team.yaml; most are refused, as
they would be. After every sequence:

- every version standing in Production, or holding @champion or @prod, got there by an
  audited move naming a request: an applied one whose approvals satisfied the gate at
  the moment it was applied, or, for a break-glass move, the review request it left
  (opened by a holder of a break-glass role);
- replaying the audit log's stage and alias rows gives exactly the registry's stages and
  aliases, and the hash chain verifies.

Each example starts from a copy of one template database (SQLite), so the sequences are
independent and the whole run stays within a minute.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

from mlflow_governance.audit.query import history, holders_at, verify
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.exceptions import GovernanceError
from mlflow_governance.identity import SOURCE_ASSERTED, Identity, acting_as
from mlflow_governance.policy import Subject, count_approvals, load_policy, may_break_glass
from mlflow_governance.workflow import requests as rq
from mlflow_governance.workflow.moves import _fact
from mlflow_governance.workflow.requests import Target
from mlflow_governance.workflow.service import Workflow
from mlflow_governance.workflow.tables import OPEN_STATES
from tests.workflow import EXAMPLES, add_version, seed_registry

MODEL = "fraud"
POLICY = EXAMPLES / "team.yaml"
USERS = ("alice", "bob", "carol", "frank", "dave", "erin", "oscar", "admin")
# Approvers and promoters come up more often, so that gated moves are reached at all.
APPROVERS = st.sampled_from(("dave", "erin", "alice", "admin"))
MOVERS = st.sampled_from(("carol", "frank", "carol", "alice", "admin", "oscar"))
ANYONE = st.sampled_from(USERS)
GATED_ALIASES = ("champion", "prod")
PASSED = {"validation_status": "passed"}
TARGETS = st.sampled_from(
    (Target("stage", "Production"), Target("alias", "champion"), Target("alias", "prod"))
)
STAGES = ("Staging", "Production", "None")
ALIASES = ("champion", "prod", "challenger")
ROLLBACKS = (Target("stage", "Production"), Target("alias", "champion"))


# 1-4 are seeded (1 and 2 ready for the gate), 5 exists once registered.
VERSIONS = st.sampled_from((1, 1, 1, 2, 2, 2, 3, 4, 5))
# Who approves, in a row: both approvers of team.yaml, one, or someone who does not count.
VOTERS = st.sampled_from(
    (
        ("dave", "erin"),
        ("erin", "dave"),
        ("dave", "erin"),
        ("dave",),
        ("erin",),
        ("alice",),
        ("admin", "dave"),
    )
)
PICK = st.integers(0, 1)  # the newest open request, or the one before

# (weight, strategy) per operation: the weights make the multi-step paths through the
# gate (a request, then approvals) common enough for 25 examples to reach them.
OPERATIONS = [
    (1, st.tuples(st.just("register"), ANYONE, st.booleans())),
    (2, st.tuples(st.just("transition"), MOVERS, VERSIONS, st.sampled_from(STAGES))),
    (2, st.tuples(st.just("set_alias"), MOVERS, VERSIONS, st.sampled_from(ALIASES))),
    (1, st.tuples(st.just("delete_alias"), MOVERS, st.sampled_from(ALIASES))),
    (4, st.tuples(st.just("request"), MOVERS, VERSIONS, TARGETS)),
    (6, st.tuples(st.just("approve"), VOTERS, PICK)),
    (1, st.tuples(st.just("reject"), APPROVERS, PICK)),
    (1, st.tuples(st.just("cancel"), ANYONE, PICK)),
    (2, st.tuples(st.just("rollback"), MOVERS, st.sampled_from(ROLLBACKS))),
    (1, st.tuples(st.just("delete_version"), ANYONE, VERSIONS)),
]
# sampled_from keeps repeated entries (one_of would merge equal strategies): weights hold.
SEQUENCES = st.lists(
    st.sampled_from([i for i, (weight, _) in enumerate(OPERATIONS) for _ in range(weight)]).flatmap(
        lambda i: OPERATIONS[i][1]
    ),
    min_size=6,
    max_size=12,
)


def _who(user: str) -> Identity:
    return Identity(user, SOURCE_ASSERTED)


class Registry:
    """One fresh registry (a copy of the template) and the operations on it."""

    def __init__(self, template: Path, path: Path) -> None:
        from mlflow_governance.store import GovernedStore

        shutil.copy(template, path)
        self.url = f"sqlite:///{path}"
        self.store = GovernedStore(self.url)
        self.flow = Workflow(self.store)

    def close(self) -> None:
        self.store.engine.dispose()
        engine = SqlAlchemyStore._engine_map.pop(self.url, None)
        if engine is not None:
            engine.dispose()

    def attempt(self, user: str, call: Any) -> None:
        """Run ``call`` as ``user``; refusals and conflicts are part of the game."""
        with acting_as(_who(user)):
            try:
                call()
            except (MlflowException, GovernanceError) as exc:
                event(f"refused or conflicting: {type(exc).__name__}")

    def open_requests(self) -> list[int]:
        """Ids of the open requests, newest first (opened directly or by refused moves)."""
        with self.store.engine.connect() as conn:
            return [view.id for view in rq.search(conn, model=MODEL, states=OPEN_STATES)]

    def run(self, op: tuple[Any, ...]) -> None:
        name, *args = op
        store, flow = self.store, self.flow
        if name == "register":
            user, validated = args
            tags = [ModelVersionTag("validation_status", "passed")] if validated else []
            return self.attempt(
                user, lambda: store.create_model_version(MODEL, "file:///m", tags=tags)
            )
        if name == "transition":
            user, version, stage = args
            return self.attempt(
                user, lambda: store.transition_model_version_stage(MODEL, version, stage, False)
            )
        if name == "set_alias":
            user, version, alias = args
            return self.attempt(
                user, lambda: store.set_registered_model_alias(MODEL, alias, version)
            )
        if name == "delete_alias":
            user, alias = args
            return self.attempt(user, lambda: store.delete_registered_model_alias(MODEL, alias))
        if name == "request":
            user, version, to = args
            return self.attempt(user, lambda: flow.open_request(_who(user), MODEL, version, to))
        if name == "rollback":
            user, to = args
            return self.attempt(user, lambda: flow.rollback(_who(user), MODEL, to))
        if name == "delete_version":
            user, version = args
            return self.attempt(user, lambda: store.delete_model_version(MODEL, version))
        ids = self.open_requests()
        if not ids:
            return None
        users, pick = args
        request_id = ids[min(pick, len(ids) - 1)]
        for user in [users] if isinstance(users, str) else users:
            if name == "approve":
                self.attempt(user, lambda u=user: flow.approve(_who(u), request_id))
            elif name == "reject":
                self.attempt(user, lambda u=user: flow.reject(_who(u), request_id, "no"))
            else:
                self.attempt(user, lambda u=user: flow.cancel(_who(u), request_id))
        return None

    # ------------------------------------------------------------------ the properties

    def check(self) -> None:
        policy = load_policy(POLICY)
        (gate,) = policy.gates.values()
        with self.store.engine.connect() as conn:
            events = history(conn, MODEL)
            held = {(h.kind, h.name, h.version) for h in holders_at(events)}
            assert verify(conn).ok
            rows = {row.id: row for row in conn.execute(audit_log.select())}
        versions = SqlAlchemyStore.search_model_versions(self.store, f"name = '{MODEL}'")
        stages = {int(mv.version): mv.current_stage for mv in versions}
        aliases = {
            alias: int(version)
            for alias, version in SqlAlchemyStore.get_registered_model(
                self.store, MODEL
            ).aliases.items()
        }
        actual = {
            ("stage", st_, v) for v, st_ in stages.items() if st_ in ("Staging", "Production")
        }
        actual |= {("alias", alias, v) for alias, v in aliases.items()}
        assert held == actual, "the audit log does not replay to the registry's state"

        gated = [("stage", "Production", v) for v, st_ in stages.items() if st_ == "Production"]
        gated += [("alias", a, v) for a, v in aliases.items() if a in GATED_ALIASES]
        event(f"gated holders: {len(gated)}")
        for kind, name, version in gated:
            entered = next(
                ev
                for ev in reversed(events)
                if ev.kind == kind
                and (ev.version == version if kind == "stage" else ev.name == name)
            )
            assert entered.after == (name if kind == "stage" else str(version))
            row = rows[entered.audit_id]
            assert entered.request_id is not None, f"{kind} {name} v{version}: no request ({row})"
            request = self.flow.get(entered.request_id)
            assert (request.version, request.target) == (version, Target(kind, name))
            event(f"gated {kind} through a {request.kind} request")
            if request.kind == "review":
                assert json.loads(row.details or "{}").get("break_glass") is True, row
                assert row.rule == "gates.production.break_glass_roles"
                assert request.requester == row.actor
                assert may_break_glass(policy, gate, MODEL, Subject(row.actor)).granted
                assert request.state in ("pending", "approved")
                continue
            assert request.state == "applied" and request.applied_at is not None
            applied = datetime.fromisoformat(request.applied_at.rstrip("Z"))
            votes = [
                _fact(vote)
                for vote in request.approvals
                if vote.decision == "approve" and _fact(vote).time <= applied
            ]
            report = count_approvals(
                policy,
                gate,
                MODEL,
                votes,
                requester=request.requester,
                creator=self.store.raw_version(MODEL, version).user_id,
                now=applied,
                rollback=request.kind == "rollback",
            )
            assert report.satisfied, (kind, name, version, report)


@pytest.fixture
def template(_sqlite_template: Path, tmp_path: Path) -> Path:
    """The registry every example starts from (seeded without a policy, audited)."""

    def plan(store: Any) -> None:
        # Versions 1-3 in Staging (1 and 2 validated), 4 in None: a gated move is a few
        # steps away. Nothing gated is held yet.
        add_version(store, MODEL, tags=PASSED, stages=["Staging"])
        add_version(store, MODEL, tags=PASSED, stages=["Staging"])
        add_version(store, MODEL, stages=["Staging"])
        add_version(store, MODEL, tags=PASSED)

    return seed_registry(_sqlite_template, tmp_path / "template.db", plan)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(operations=SEQUENCES)
def test_no_sequence_gets_around_the_gate(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operations: list[Any]
) -> None:
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", str(POLICY))
    registry = Registry(template, tmp_path / f"example-{len(list(tmp_path.iterdir()))}.db")
    try:
        for op in operations:
            registry.run(op)
        registry.check()
    finally:
        registry.close()
