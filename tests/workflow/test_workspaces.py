"""Workspaces keep requests, history, rollbacks and role bindings apart.

The governed store runs workspace-aware, in process, exactly as ``mlflow server
--enable-workspaces`` runs it: ``MLFLOW_ENABLE_WORKSPACES=true`` makes ``build_store``
pick ``GovernedWorkspaceStore``, and each call runs in MLflow's own workspace context
(``ServerWorkspaceContext``, what MLflow's server middleware sets for a request). Both
workspaces hold a model of the same name with versions of the same numbers, driven with
the stock ``MlflowClient`` and the ``GovernanceClient`` under ``policies/workspaces.yaml``
on SQLite, PostgreSQL and MariaDB:

- a request approved for ``m`` v1 in team-a never applies to ``m`` v1 in team-b, through
  any path, and a call in team-b leaves it as it was;
- history and rollback in one workspace see that workspace's changes only;
- a binding limited to ``workspaces: [team-a]`` grants nothing in team-b: no move, no
  vote, no break glass, no cancelling or rejecting another workspace's requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.dbmodels.models import SqlModelVersion
from mlflow.utils.workspace_context import ServerWorkspaceContext

from mlflow_governance.audit.history import history, holders_at
from mlflow_governance.exceptions import GovernanceError
from mlflow_governance.identity import SOURCE_ASSERTED, Identity
from mlflow_governance.workflow.promotion import Workflow
from mlflow_governance.workflow.tables import approvals, requests
from tests.workflow import request_id_in
from tests.workflow.conftest import Registry, make_registry

TEAM_A, TEAM_B = "team-a", "team-b"
MODEL = "m"


class Teams:
    """A workspace-aware governed registry and the calls the tests make in a workspace."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.flow = Workflow(reg.store)

    def run(self, space: str, user: str, call: Callable[[], Any]) -> Any:
        """``call`` as ``user`` in workspace ``space``."""
        with ServerWorkspaceContext(space):
            return self.reg.run(user, call)

    def fails(self, space: str, user: str, call: Callable[[], Any]) -> MlflowException:
        """``call`` as ``user`` in ``space`` must raise an MlflowException, returned."""
        with ServerWorkspaceContext(space):
            return self.reg.fails(user, call)

    def seed(self, space: str, model: str = MODEL, **kwargs: Any) -> int:
        """A version registered and placed in ``space`` without a policy in the way."""
        with ServerWorkspaceContext(space):
            return self.reg.seed(model, **kwargs)

    def stages(self, space: str, model: str = MODEL) -> dict[int, str]:
        """Version -> stage of ``model`` in ``space``, read from MLflow's table."""
        mv = SqlModelVersion
        with self.reg.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(mv.version, mv.current_stage).where(
                    mv.workspace == space,
                    mv.name == model,
                    mv.current_stage != "Deleted_Internal",
                )
            ).all()
        return {int(version): str(stage) for version, stage in rows}

    def request(self, request_id: int) -> Any:
        """A request row as stored, whatever its workspace."""
        with self.reg.store.engine.connect() as conn:
            return conn.execute(sa.select(requests).where(requests.c.id == request_id)).one()

    def approved(self, space: str, version: int, to: str = "Production") -> int:
        """alice asks in ``space``; dave and erin approve there (apply is manual)."""
        gov = self.reg.gov
        rid = int(self.run(space, "alice", lambda: gov.request(MODEL, version, to))["id"])
        self.run(space, "dave", lambda: gov.approve(rid))
        assert self.run(space, "erin", lambda: gov.approve(rid))["state"] == "approved"
        return rid


@pytest.fixture
def teams(
    registry_uri: str, monkeypatch: pytest.MonkeyPatch, fresh_mlflow_stores: None
) -> Iterator[Teams]:
    """A fresh workspace-aware governed registry on each backend, under workspaces.yaml."""
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    reg = make_registry(registry_uri, monkeypatch, None)
    assert reg.store.supports_workspaces
    reg.use_policy("workspaces")
    yield Teams(reg)
    reg.store.engine.dispose()


def _code(exc: BaseException) -> str:
    assert isinstance(exc, (MlflowException, GovernanceError)), repr(exc)
    return str(exc.error_code)


# ---------------------------------------------------------------------- requests


def test_a_request_approved_in_team_a_never_applies_in_team_b(teams: Teams) -> None:
    """Same name, same number, another version: team-b's v1 stays where it is whatever
    path alice takes there, and her team-a request stays approved for team-a."""
    for space in (TEAM_A, TEAM_B):
        teams.seed(space, stages=["Staging"])
    rid = teams.approved(TEAM_A, 1)
    mlflow, gov = teams.reg.mlflow, teams.reg.gov

    refused = teams.fails(
        TEAM_B, "alice", lambda: mlflow.transition_model_version_stage(MODEL, 1, "Production")
    )
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    opened = request_id_in(refused.message)  # team-b's own request, not team-a's
    assert opened != rid
    assert teams.request(opened).workspace == TEAM_B
    refused = teams.fails(
        TEAM_B, "alice", lambda: mlflow.set_registered_model_alias(MODEL, "champion", 1)
    )
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    promoted = teams.run(TEAM_B, "alice", lambda: gov.promote(MODEL, 1, "Production"))
    assert promoted["status"] == "pending" and promoted["request"]["id"] != rid
    with ServerWorkspaceContext(TEAM_B), pytest.raises(GovernanceError) as missing:
        teams.flow.apply(Identity("alice", SOURCE_ASSERTED), rid)
    assert _code(missing.value) == "RESOURCE_DOES_NOT_EXIST"

    assert teams.stages(TEAM_B) == {1: "Staging"}
    assert teams.request(rid).state == "approved"
    # In its own workspace the request applies, to team-a's v1 alone.
    teams.run(
        TEAM_A, "alice", lambda: mlflow.transition_model_version_stage(MODEL, 1, "Production")
    )
    assert teams.stages(TEAM_A) == {1: "Production"}
    assert teams.stages(TEAM_B) == {1: "Staging"}
    applied = teams.request(rid)
    assert (applied.state, applied.workspace) == ("applied", TEAM_A)
    entered = [
        r
        for r in teams.reg.audit(action="transition_model_version_stage", decision="allow")
        if r["request_id"] == rid
    ]
    assert [(r["workspace"], r["stage_after"]) for r in entered] == [(TEAM_A, "Production")]


def test_votes_from_another_workspace_do_not_reach_a_request(teams: Teams) -> None:
    """dave approves everywhere, but only in the request's own workspace: from team-b a
    team-a request is not there to approve."""
    for space in (TEAM_A, TEAM_B):
        teams.seed(space, stages=["Staging"])
    gov = teams.reg.gov
    rid = int(teams.run(TEAM_A, "alice", lambda: gov.request(MODEL, 1, "Production"))["id"])
    missing = teams.fails(TEAM_B, "dave", lambda: gov.approve(rid))
    assert missing.error_code == "RESOURCE_DOES_NOT_EXIST", missing.message
    assert teams.request(rid).state == "pending"
    with teams.reg.store.engine.connect() as conn:
        votes = conn.execute(sa.select(approvals).where(approvals.c.request_id == rid)).all()
    assert votes == []


# ---------------------------------------------------------------------- history and rollback


def _seed_histories(teams: Teams) -> None:
    """team-b first: v1 then v3 in Production (v1 archived); then team-a: v2 in Production."""
    for _ in range(3):
        teams.seed(TEAM_B)
    with ServerWorkspaceContext(TEAM_B):
        teams.reg.run(
            "root",
            lambda: teams.reg.mlflow.transition_model_version_stage(MODEL, 1, "Production"),
        )
        teams.reg.run(
            "root",
            lambda: teams.reg.mlflow.transition_model_version_stage(
                MODEL, 3, "Production", archive_existing_versions=True
            ),
        )
    teams.seed(TEAM_A)
    teams.seed(TEAM_A, stages=["Production"])


def _events(teams: Teams, space: str | None) -> list[tuple[str, str, int | None, str | None]]:
    with teams.reg.store.engine.connect() as conn:
        events = history(conn, MODEL, workspace=space)
    return [(e.kind, e.name, e.version, e.after) for e in events if e.after != "None"]


TEAM_A_EVENTS = [("stage", "Production", 2, "Production")]
TEAM_B_EVENTS = [
    ("stage", "Production", 1, "Production"),
    ("stage", "Production", 3, "Production"),
    ("stage", "Archived", 1, "Archived"),
]


def test_history_and_rollback_in_one_workspace_ignore_the_other(teams: Teams) -> None:
    """The audit history of ``m`` in a workspace is that workspace's, and a rollback there
    restores that workspace's previous holder (v1 in team-b), never a version whose number
    held the stage in the other workspace (v2 of team-a, newer)."""
    _seed_histories(teams)
    assert _events(teams, TEAM_A) == TEAM_A_EVENTS
    assert sorted(_events(teams, TEAM_B)) == sorted(TEAM_B_EVENTS)
    gov = teams.reg.gov
    rolled = teams.run(TEAM_B, "root", lambda: gov.rollback(MODEL, stage="Production"))
    assert (rolled["status"], rolled["version"]) == ("applied", 1)
    assert teams.stages(TEAM_B)[1] == "Production"
    assert teams.stages(TEAM_A) == {1: "None", 2: "Production"}
    # team-a has no earlier holder: its rollback has nothing to restore.
    refused = teams.fails(TEAM_A, "root", lambda: gov.rollback(MODEL, stage="Production"))
    assert refused.error_code == "RESOURCE_CONFLICT", refused.message
    assert teams.stages(TEAM_A) == {1: "None", 2: "Production"}
    for space in (TEAM_A, TEAM_B):
        with teams.reg.store.engine.connect() as conn:
            replayed = {
                (h.kind, h.name, h.version)
                for h in holders_at(history(conn, MODEL, workspace=space))
            }
        actual = {
            ("stage", stage, v)
            for v, stage in teams.stages(space).items()
            if stage in ("Staging", "Production")
        }
        assert replayed == actual, space


def test_the_history_a_client_reads_is_its_workspaces_own(teams: Teams) -> None:
    """What ``GovernanceClient.history`` shows in team-a is team-a's history alone."""
    _seed_histories(teams)
    shown = teams.run(TEAM_A, "root", lambda: teams.reg.gov.history(MODEL))
    assert [
        (e["kind"], e["name"], e["version"], e["after"]) for e in shown if e["after"] != "None"
    ] == TEAM_A_EVENTS


def test_a_rename_in_another_workspace_leaves_history_and_rollback_alone(teams: Teams) -> None:
    """team-b's ``x`` has had v2 in Production and no one before it, so a rollback there has
    nothing to restore, whatever team-a renames into the name ``x``."""
    mlflow = teams.reg.mlflow
    for _ in range(2):
        teams.seed(TEAM_B, "x")
    teams.seed(TEAM_B, "y")
    with ServerWorkspaceContext(TEAM_B):
        for model, version in (("x", 2), ("y", 1)):
            teams.reg.run(
                "root",
                lambda m=model, v=version: mlflow.transition_model_version_stage(
                    m, v, "Production"
                ),
            )
    teams.seed(TEAM_A, "y")
    teams.run(TEAM_A, "alice", lambda: mlflow.rename_registered_model("y", "x"))

    with teams.reg.store.engine.connect() as conn:
        events = history(conn, "x", workspace=TEAM_B)
    assert [(e.version, e.after) for e in events if e.after == "Production"] == [(2, "Production")]
    refused = teams.fails(TEAM_B, "root", lambda: teams.reg.gov.rollback("x", stage="Production"))
    assert refused.error_code == "RESOURCE_CONFLICT", refused.message
    assert teams.stages(TEAM_B, "x") == {1: "None", 2: "Production"}


# ---------------------------------------------------------------------- bindings


def test_a_binding_for_team_a_grants_nothing_in_team_b(teams: Teams) -> None:
    """sue stages, amy approves and tina breaks glass in team-a; in team-b each is refused
    like anyone without a role, and amy's vote there does not count."""
    for space in (TEAM_A, TEAM_B):
        teams.seed(space)
    mlflow, gov = teams.reg.mlflow, teams.reg.gov

    teams.run(TEAM_A, "sue", lambda: mlflow.transition_model_version_stage(MODEL, 1, "Staging"))
    refused = teams.fails(
        TEAM_B, "sue", lambda: mlflow.transition_model_version_stage(MODEL, 1, "Staging")
    )
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    refused = teams.fails(TEAM_B, "sue", lambda: mlflow.get_registered_model(MODEL))
    assert refused.error_code == "PERMISSION_DENIED", refused.message

    ask_b = int(teams.run(TEAM_B, "alice", lambda: gov.request(MODEL, 1, "Production"))["id"])
    refused = teams.fails(TEAM_B, "amy", lambda: gov.approve(ask_b))
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    teams.run(TEAM_B, "dave", lambda: gov.approve(ask_b))
    assert teams.request(ask_b).state == "pending"  # amy's voice is not the second
    ask_a = int(teams.run(TEAM_A, "alice", lambda: gov.request(MODEL, 1, "Production"))["id"])
    teams.run(TEAM_A, "amy", lambda: gov.approve(ask_a))
    teams.run(TEAM_A, "dave", lambda: gov.approve(ask_a))
    assert teams.request(ask_a).state == "approved"

    refused = teams.fails(
        TEAM_B, "tina", lambda: mlflow.transition_model_version_stage(MODEL, 1, "Production")
    )
    assert refused.error_code == "PERMISSION_DENIED", refused.message
    assert teams.stages(TEAM_B) == {1: "None"}
    teams.run(
        TEAM_A, "tina", lambda: mlflow.set_registered_model_alias(MODEL, "champion", 1)
    )  # break glass, where tina is an admin
    reviews = [
        r for r in teams.reg.audit(action="set_registered_model_alias") if r["actor"] == "tina"
    ]
    assert [(r["decision"], r["workspace"]) for r in reviews] == [("allow", TEAM_A)]


def test_a_policy_admin_of_team_b_cannot_cancel_a_request_of_team_a(teams: Teams) -> None:
    """kim holds ``policy:admin`` in team-b only; team-a's request is out of her reach."""
    teams.seed(TEAM_A)
    teams.seed(TEAM_B)
    gov = teams.reg.gov
    rid = int(teams.run(TEAM_A, "alice", lambda: gov.request(MODEL, 1, "Production"))["id"])
    for space in (TEAM_A, TEAM_B):
        refused = teams.fails(space, "kim", lambda: gov.cancel(rid))
        assert refused.error_code in ("PERMISSION_DENIED", "RESOURCE_DOES_NOT_EXIST"), space
    assert teams.request(rid).state == "pending"


def test_an_approver_of_team_b_cannot_reject_a_request_of_team_a(teams: Teams) -> None:
    """ben approves in team-b only; from there, team-a's request is not his to reject."""
    teams.seed(TEAM_A)
    teams.seed(TEAM_B)
    gov = teams.reg.gov
    rid = int(teams.run(TEAM_A, "alice", lambda: gov.request(MODEL, 1, "Production"))["id"])
    for space in (TEAM_A, TEAM_B):
        refused = teams.fails(space, "ben", lambda: gov.reject(rid, "not in my workspace"))
        assert refused.error_code in ("PERMISSION_DENIED", "RESOURCE_DOES_NOT_EXIST"), space
    assert teams.request(rid).state == "pending"


def test_the_request_listing_of_a_workspace_is_its_own(teams: Teams) -> None:
    """Each workspace lists its own requests for ``m`` v1, never the other's."""
    for space in (TEAM_A, TEAM_B):
        teams.seed(space)
    gov = teams.reg.gov
    ids = {
        space: int(teams.run(space, "alice", lambda: gov.request(MODEL, 1, "Production"))["id"])
        for space in (TEAM_A, TEAM_B)
    }
    assert ids[TEAM_A] != ids[TEAM_B]  # team-b's request is a request of its own
    for space in (TEAM_A, TEAM_B):
        listed = teams.run(space, "dave", lambda: gov.requests(model=MODEL))
        assert [r["id"] for r in listed] == [ids[space]], space
        assert [r["workspace"] for r in listed] == [space]
