"""Random operation sequences never get a version behind a gate without its sanction.

Two properties, both driven by Hypothesis:

``test_no_operation_sequence_gets_past_a_gate`` (SQLite; ``..._on_servers``: PostgreSQL
and MariaDB) drives the stock ``MlflowClient`` and the ``GovernanceClient`` as ordinary
accounts, approvers and an admin of ``tests/workflow/policies/properties.yaml``:
creating, renaming (into, out of and back into gated names) and deleting models and
versions, making models again under the same name, transitions (with and without
``archive_existing_versions``), alias moves and deletions (gated aliases included),
requests, votes, cancellations, applying approved requests (stock call, ``promote``,
``Workflow.apply``), rollbacks, and on MariaDB names and aliases spelled in other cases
and accents. About half the examples run on the workspace-aware store and switch
between workspaces ``team-a`` and ``team-b`` as they go. After every single step,
computed from the database alone (MLflow's registry tables, ``governance_requests`` with
their identity columns, approvals and audit rows), never from the code under test:

- every version holding a gated stage or alias (Production, @champion, @live of a
  ``fraud-*`` model) has, for *that* version (workspace, model creation time, version
  creation time), an applied request for the target whose approvals satisfied the gate
  when it was applied, or the review request of a break-glass move by an admin;
- a version that newly holds a gated target got there in that step by an audited move
  naming such a request (a rename, a deletion or a model made again carries nothing in);
- a version that left a gated target in that step was moved by someone holding the right
  to move it, or as part of applying an approved request;
- the step's audit rows replay the registry's change exactly (models, stages, aliases):
  nothing was written half, and the hash chain verifies;
- every refused or failed call raised ``MlflowException`` with a specific error code,
  never ``INTERNAL_ERROR`` nor any other exception.

``test_no_sequence_gets_around_the_gate`` is the earlier, narrower property under
``examples/policies/team.yaml`` on the store's own methods (SQLite).

Examples start from a template registry seeded once per backend and restored row by row
before each example, so no example migrates a database. Under CI
(``MLFLOW_GOVERNANCE_REQUIRE_DATABASES=1``) the profile ``governance-ci`` runs 200
examples on every backend; elsewhere ``governance-dev`` runs 40 on SQLite and 20 on each
server backend.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import shutil
import signal
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
    SqlRegisteredModelAlias,
    SqlRegisteredModelTag,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

from mlflow_governance.audit.chain import row_hash
from mlflow_governance.audit.history import history, holders_at
from mlflow_governance.audit.query import verify
from mlflow_governance.audit.tables import audit_head, audit_log
from mlflow_governance.audit.tables import metadata as governance_metadata
from mlflow_governance.exceptions import GovernanceError
from mlflow_governance.identity import SOURCE_ASSERTED, Identity, acting_as
from mlflow_governance.policy import Subject, count_approvals, load_policy, may_break_glass
from mlflow_governance.workflow import request_rows as rq
from mlflow_governance.workflow import tables as workflow_tables
from mlflow_governance.workflow.moves import _fact
from mlflow_governance.workflow.promotion import Workflow
from mlflow_governance.workflow.request_rows import Target
from mlflow_governance.workflow.tables import OPEN_STATES
from tests.databases import REQUIRE, wipe
from tests.tamper import triggers_off
from tests.workflow import EXAMPLES, add_version, policy_path, seed_registry

settings.register_profile(
    "governance-ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "governance-dev",
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: The profile of the registry property (not loaded globally: other property tests keep theirs).
PROFILE = settings.get_profile("governance-ci" if REQUIRE else "governance-dev")
#: PostgreSQL and MariaDB run as many examples as SQLite in CI (the acceptance asks for
#: 200 on every backend) and half as many locally, to keep a developer's run short.
SERVER_PROFILE = PROFILE if REQUIRE else settings(PROFILE, max_examples=PROFILE.max_examples // 2)


# ====================================================================== the registry property

REGISTRY_POLICY = policy_path("properties")
PLAIN, WORKSPACES = "plain", "workspaces"
TEAM_A, TEAM_B = "team-a", "team-b"
#: The workspace MLflow's tables name when workspaces are off (the plugin then stores None).
DEFAULT_WORKSPACE = "default"

# What properties.yaml says, spelled out here so that the invariant does not come from
# the policy engine it checks.
GATED_MODELS = "fraud-*"
#: (kind, target) -> gate; aliases as the database compares them (folded on MariaDB).
GATE_OF = {
    ("stage", "Production"): "production",
    ("alias", "champion"): "production",
    ("alias", "live"): "live",
}
REQUIRED = {"production": 2, "live": 1}
ROLLBACK_REQUIRED = {"production": 1, "live": 1}
#: Approvers and the workspaces where their approval counts (None: everywhere).
APPROVERS: dict[str, frozenset[str] | None] = {
    "dave": None,
    "erin": None,
    "wendy": frozenset({TEAM_A}),
}
BREAK_GLASS = frozenset({"root"})
#: Who may move a version out of Production, @champion or @live of a fraud-* model.
MAY_LEAVE = frozenset({"sam", "root"})
#: Error codes a refused or failed call may carry; INTERNAL_ERROR is never one of them.
EXPECTED_CODES = frozenset(
    {
        "PERMISSION_DENIED",
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "RESOURCE_CONFLICT",
        "INVALID_PARAMETER_VALUE",
        "INVALID_STATE",
    }
)

#: Seconds one step may take before it counts as hanging (a step takes well under one).
STEP_DEADLINE = 60
#: Stock MLflow answers transition(..., "Archived", archive_existing_versions=True) with an
#: MlflowException carrying no code (INTERNAL_ERROR) before it touches the database; the
#: governed store keeps MLflow's error there on purpose (tests/test_differential.py).
MLFLOW_OWN_500 = "cannot archive existing model versions because"

MODELS = ("fraud-a", "fraud-a", "fraud-b", "fraud-c", "sandbox-a", "sandbox-a", "sandbox-b")
#: Other spellings MariaDB compares equal to the names above (MariaDB only).
SPELLED_MODELS = ("FRAUD-A", "Fráud-a", "fraud-B", "SANDBOX-A")
ALIASES = ("champion", "champion", "live", "live", "challenger", "dev")
SPELLED_ALIASES = ("CHAMPION", "chámpion", "Live", "LIVE", "Challenger")
STAGES = ("Production", "Production", "Staging", "Archived", "None")
TARGETS = ("Production", "Production", "@champion", "@live")
VERSIONS = st.sampled_from((1, 1, 2, 2, 3, 4))
MOVERS = st.sampled_from(("alice", "bob", "sam", "sam", "mallory", "root"))
BUILDERS = st.sampled_from(("alice", "bob", "alice", "sam", "mallory", "root"))
ANYONE = st.sampled_from(("alice", "bob", "sam", "mallory", "dave", "erin", "wendy", "root"))
VOTERS = st.sampled_from(
    (
        ("dave", "erin"),
        ("erin", "dave"),
        ("dave",),
        ("erin",),
        ("wendy", "dave"),
        ("wendy",),
        ("alice",),
        ("root", "erin"),
    )
)
PICK = st.integers(0, 2)  # the newest matching request, or one of the two before


def _operations(backend: str) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Weighted operation sequences; MariaDB also gets names spelled otherwise.

    Besides single calls there are a few macros (expanded by :func:`_steps`, with the
    invariant checked after each of their steps): a request, its votes and its apply in
    a row; a rollback, a vote and an apply; a model deleted and made again; a gated model
    renamed to an ungated name and back.
    """
    spelled = backend == "mysql"
    models = st.sampled_from(MODELS + (SPELLED_MODELS if spelled else ()))
    gated = st.sampled_from(("fraud-a", "fraud-a", "fraud-b") + (("Fráud-a",) if spelled else ()))
    aliases = st.sampled_from(ALIASES + (SPELLED_ALIASES if spelled else ()))
    targets = st.sampled_from(TARGETS + (("@CHAMPION", "@Live") if spelled else ()))
    how = st.sampled_from(("stock", "promote", "workflow"))
    appliers = st.sampled_from((None, None, None, "sam", "alice", "mallory"))
    requesters = st.sampled_from(("alice", "bob", "alice", "sam", "mallory", "root"))
    rollbacks = st.sampled_from(("Production", "@champion"))
    ops: list[tuple[int, st.SearchStrategy[tuple[Any, ...]]]] = [
        (1, st.tuples(st.just("create_model"), BUILDERS, models)),
        (2, st.tuples(st.just("create_version"), BUILDERS, models)),
        (
            4,
            st.tuples(
                st.just("transition"),
                MOVERS,
                models,
                VERSIONS,
                st.sampled_from(STAGES),
                st.booleans(),
            ),
        ),
        (3, st.tuples(st.just("set_alias"), MOVERS, models, aliases, VERSIONS)),
        (1, st.tuples(st.just("delete_alias"), MOVERS, models, aliases)),
        (2, st.tuples(st.just("rename"), BUILDERS, models, models)),
        (1, st.tuples(st.just("delete_version"), BUILDERS, models, VERSIONS)),
        (1, st.tuples(st.just("delete_model"), BUILDERS, models)),
        (2, st.tuples(st.just("request"), requesters, models, VERSIONS, targets)),
        (3, st.tuples(st.just("approve"), VOTERS, PICK)),
        (1, st.tuples(st.just("reject"), ANYONE, PICK)),
        (1, st.tuples(st.just("cancel"), ANYONE, PICK)),
        (2, st.tuples(st.just("apply"), how, appliers, PICK)),
        (1, st.tuples(st.just("rollback"), MOVERS, models, rollbacks)),
        (2, st.tuples(st.just("workspace"), st.sampled_from((TEAM_A, TEAM_B)))),
        (
            6,
            st.tuples(st.just("flow"), requesters, gated, VERSIONS, targets, VOTERS, how, appliers),
        ),
        (1, st.tuples(st.just("rollback_flow"), MOVERS, gated, rollbacks, VOTERS, how)),
        (1, st.tuples(st.just("recreate"), st.sampled_from(("root", "bob")), models)),
        (
            2,
            st.tuples(
                st.just("rename_round"),
                st.sampled_from(("root", "root", "alice", "sam")),
                gated,
                st.sampled_from(("sandbox-b", "sandbox-c")),
                BUILDERS,
            ),
        ),
    ]
    # sampled_from keeps repeated entries (one_of would merge equal strategies): weights hold.
    weighted = [i for i, (weight, _) in enumerate(ops) for _ in range(weight)]
    return st.lists(st.sampled_from(weighted).flatmap(lambda i: ops[i][1]), min_size=4, max_size=10)


def _steps(op: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The single calls an operation stands for (macros expanded)."""
    name, *args = op
    if name == "flow":
        requester, model, version, target, voters, how, applier = args
        return [
            ("request", requester, model, version, target),
            ("approve", voters, 0),
            ("apply", how, applier, 0),
        ]
    if name == "rollback_flow":
        user, model, target, voters, how = args
        return [("rollback", user, model, target), ("approve", voters, 0), ("apply", how, None, 0)]
    if name == "rename_round":
        out, model, elsewhere, back = args
        return [("rename", out, model, elsewhere), ("rename", back, elsewhere, model)]
    if name == "recreate":
        user, model = args
        return [
            ("delete_model", user, model),
            ("create_model", user, model),
            ("create_version", user, model),
            ("create_version", user, model),
        ]
    return [op]


def _fold(name: str) -> str:
    """A name as MariaDB's default collation compares it (case and accents ignored)."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _ws(value: str | None) -> str:
    return value or DEFAULT_WORKSPACE


#: (workspace, model key) / (workspace, model key, version) / (..., alias key)
ModelKey = tuple[str, str]
VersionKey = tuple[str, str, int]
AliasKey = tuple[str, str, str]
#: A gated target held by one version: (workspace, model created, version created, kind,
#: target), the version named by its identity rather than its name and number.
Holder = tuple[str, int, int, str, str]


@dataclass(frozen=True)
class Snapshot:
    """The registry as MLflow's own tables hold it (deleted versions left out).

    Names are keys as the database compares them: folded on MariaDB, as spelled elsewhere.
    """

    models: dict[ModelKey, tuple[str, int]]  # -> (stored name, creation time)
    stages: dict[VersionKey, str]
    created: dict[VersionKey, int]
    aliases: dict[AliasKey, int]

    def gated(self) -> dict[Holder, tuple[str, int]]:
        """Every gated target held now -> (model name, version number)."""
        held: dict[Holder, tuple[str, int]] = {}
        for (ws, key, version), stage in self.stages.items():
            name, model_created = self.models[(ws, key)]
            if stage == "Production" and fnmatch.fnmatchcase(name, GATED_MODELS):
                identity = (ws, model_created, self.created[(ws, key, version)])
                held[(*identity, "stage", "Production")] = (name, version)
        for (ws, key, alias), version in self.aliases.items():
            name, model_created = self.models[(ws, key)]
            if ("alias", alias) in GATE_OF and fnmatch.fnmatchcase(name, GATED_MODELS):
                identity = (ws, model_created, self.created[(ws, key, version)])
                held[(*identity, "alias", alias)] = (name, version)
        return held


class Lab:
    """One backend's registry in both modes, the clients that drive it and its template.

    Args:
        backend: ``sqlite``, ``postgresql`` or ``mysql``.
        urls: Plain database URLs for the plain and the workspace-aware store (the same
            database on server backends, told apart by a harmless query parameter).
        monkeypatch: For the workspace switch and the policy.
    """

    def __init__(self, backend: str, urls: dict[str, str], monkeypatch: pytest.MonkeyPatch):
        from mlflow_governance.client import GovernanceClient

        self.backend = backend
        self.urls = urls
        self.monkeypatch = monkeypatch
        self.key: Callable[[str], str] = _fold if backend == "mysql" else (lambda s: s)
        self.engines = {mode: sa.create_engine(url) for mode, url in urls.items()}
        self.tables = [
            *(
                model.__table__
                for model in (
                    SqlRegisteredModel,
                    SqlModelVersion,
                    SqlRegisteredModelTag,
                    SqlModelVersionTag,
                    SqlRegisteredModelAlias,
                )
            ),
            *governance_metadata.sorted_tables,
        ]
        assert workflow_tables.requests in self.tables
        monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", REGISTRY_POLICY)
        self.clients: dict[str, tuple[MlflowClient, Any, Workflow]] = {}
        self.templates: dict[str, dict[str, list[dict[str, Any]]]] = {}
        # The plain store first: MLflow refuses to open a plain store on a database that
        # holds another workspace's rows, as the workspace-aware seed leaves it.
        for mode in (PLAIN, WORKSPACES):
            self._workspaces(mode)
            wipe(urls[mode])  # server backends keep both modes in one database
            uri = f"governed+{urls[mode]}"
            gov = GovernanceClient(uri)
            client = MlflowClient(registry_uri=uri)
            client._get_registry_client()  # builds (and caches) the store in this mode
            self.clients[mode] = (client, gov, Workflow(gov.store))
            self._seed(mode)
            self.templates[mode] = self._snapshot_rows(mode)

    def _workspaces(self, mode: str) -> None:
        if mode == WORKSPACES:
            self.monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
        else:
            self.monkeypatch.delenv("MLFLOW_ENABLE_WORKSPACES", raising=False)

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()

    # ------------------------------------------------------------------ template

    def _seed(self, mode: str) -> None:
        """The template: gated targets held by break-glass moves, reviews open.

        In each workspace: fraud-a v1 in Production and @champion, v2 in Staging and
        @challenger, v3 in None; fraud-b v1 in Staging, v2 in None; sandbox-a v1 in
        Production and @champion (ungated there). MLflow's clock is replaced by a counter
        so that no two models or versions share a creation time.
        """
        from mlflow.store.model_registry import sqlalchemy_store

        client, _, _ = self.clients[mode]
        clock = count(1_600_000_000_000, 1000)
        spaces = (TEAM_A, TEAM_B) if mode == WORKSPACES else (None,)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sqlalchemy_store, "get_current_time_millis", lambda: next(clock))
            for space in spaces:
                with _workspace(space):
                    self._seed_one(client)

    @staticmethod
    def _seed_one(client: MlflowClient) -> None:
        for model, count_ in (("fraud-a", 3), ("fraud-b", 2), ("sandbox-a", 2)):
            with acting_as(_who("alice")):
                client.create_registered_model(model)
                for _ in range(count_):
                    client.create_model_version(model, "file:///models/m")
        with acting_as(_who("root")):
            client.transition_model_version_stage("fraud-a", 1, "Production")
            client.set_registered_model_alias("fraud-a", "champion", 1)
            client.transition_model_version_stage("sandbox-a", 1, "Production")
            client.set_registered_model_alias("sandbox-a", "champion", 1)
        with acting_as(_who("alice")):
            client.transition_model_version_stage("fraud-a", 2, "Staging")
            client.set_registered_model_alias("fraud-a", "challenger", 2)
            client.transition_model_version_stage("fraud-b", 1, "Staging")

    def _snapshot_rows(self, mode: str) -> dict[str, list[dict[str, Any]]]:
        with self.engines[mode].connect() as conn:
            return {
                table.name: [dict(row._mapping) for row in conn.execute(table.select())]
                for table in self.tables
            }

    def restore(self, mode: str) -> None:
        """Put the template of ``mode`` back, row by row, in one transaction."""
        rows = self.templates[mode]
        # The audit log is append-only: emptying it is a DBA's act, triggers out of the way.
        with self.engines[mode].begin() as conn, triggers_off(conn):
            for table in reversed(self.tables):
                conn.execute(table.delete())
            for table in self.tables:
                if rows[table.name]:
                    conn.execute(table.insert(), rows[table.name])

    # ------------------------------------------------------------------ reading the database

    def snapshot(self, mode: str) -> Snapshot:
        """The registry now, from MLflow's tables."""
        key = self.key
        rm, mv, al = (SqlRegisteredModel, SqlModelVersion, SqlRegisteredModelAlias)
        with self.engines[mode].connect() as conn:
            models = {
                (row.workspace, key(row.name)): (row.name, int(row.creation_time))
                for row in conn.execute(sa.select(rm.workspace, rm.name, rm.creation_time))
            }
            stages: dict[VersionKey, str] = {}
            created: dict[VersionKey, int] = {}
            for row in conn.execute(
                sa.select(mv.workspace, mv.name, mv.version, mv.current_stage, mv.creation_time)
            ):
                if row.current_stage == "Deleted_Internal":
                    continue
                vkey = (row.workspace, key(row.name), int(row.version))
                stages[vkey] = row.current_stage
                created[vkey] = int(row.creation_time)
            aliases = {
                (row.workspace, key(row.name), key(row.alias)): int(row.version)
                for row in conn.execute(sa.select(al.workspace, al.name, al.alias, al.version))
            }
        return Snapshot(models, stages, created, aliases)

    def audit_mark(self, mode: str) -> int:
        with self.engines[mode].connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(audit_log.c.id))).scalar() or 0)


@contextlib.contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """Fail with TimeoutError instead of hanging when ``what`` takes longer than ``seconds``.

    A timer signal (not a sleep): it interrupts an endless loop in the main thread.
    """

    def expire(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"{what} did not finish within {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _who(user: str) -> Identity:
    return Identity(user, SOURCE_ASSERTED)


@contextlib.contextmanager
def _workspace(space: str | None) -> Iterator[None]:
    """Act in MLflow workspace ``space`` (None: no workspace context at all)."""
    if space is None:
        yield
        return
    from mlflow.utils.workspace_context import ServerWorkspaceContext

    with ServerWorkspaceContext(space):
        yield


@dataclass(frozen=True)
class RequestRow:
    """A governance_requests row and its approvals, as stored."""

    id: int
    kind: str
    model: str
    version: int
    target_kind: str
    target: str
    state: str
    requester: str
    archive_existing: bool
    applied_at: datetime | None
    applied_by: str | None
    workspace: str
    model_created: int | None
    version_created: int | None
    approvals: tuple[tuple[str, str, datetime], ...]  # (approver, decision, time)


class Example:
    """One example: a registry restored from the template, operations, and the checks.

    Args:
        lab: The backend's lab.
        mode: ``plain`` or ``workspaces``.
    """

    def __init__(self, lab: Lab, mode: str) -> None:
        self.lab = lab
        self.mode = mode
        self.key = lab.key
        self.mlflow, self.gov, self.flow = lab.clients[mode]
        lab._workspaces(mode)
        lab.restore(mode)
        self.space: str | None = TEAM_A if mode == WORKSPACES else None
        self.step = ""
        self.before = lab.snapshot(mode)
        self.mark = lab.audit_mark(mode)
        #: Gated holders and the request that lets each hold its target.
        self.holders: dict[Holder, int] = {}
        self.holders = self._justified(self.before, self._requests())
        #: The newest audit row verified so far (id, hash).
        self.chain = self.verify_chain()

    # ------------------------------------------------------------------ operations

    def attempt(self, user: str, call: Callable[[], Any]) -> bool:
        """Run ``call`` as ``user`` in the current workspace; refusals are part of the game.

        Returns:
            Whether the call succeeded.

        Raises:
            AssertionError: The call failed with anything but an MlflowException (or, from
                ``Workflow``, a GovernanceError) carrying one of the expected codes.
        """
        with acting_as(_who(user)), _workspace(self.space):
            try:
                call()
            except (MlflowException, GovernanceError) as exc:
                code = exc.error_code
                if code == "INTERNAL_ERROR" and MLFLOW_OWN_500 in str(exc):
                    event("MLflow's own INTERNAL_ERROR: archiving into an inactive stage")
                elif self._known_rename_failure(code, str(exc)):
                    event("known: a rename onto a taken name fails as TEMPORARILY_UNAVAILABLE")
                else:
                    assert code in EXPECTED_CODES, f"{type(exc).__name__} {code}: {exc}"
                    event(f"refused or failed: {code}")
                return False
        event(f"succeeded: {self.step}")
        return True

    def _known_rename_failure(self, code: str, message: str) -> bool:
        """MariaDB refuses a rename onto a taken name with error 1761 (a foreign key
        cascade), which reaches the caller as TEMPORARILY_UNAVAILABLE; pinned as a strict
        xfail by ``test_a_rename_onto_a_taken_name_is_resource_already_exists``."""
        return (
            self.lab.backend == "mysql" and code == "TEMPORARILY_UNAVAILABLE" and "1761" in message
        )

    def _requests(self, states: tuple[str, ...] | None = None) -> list[RequestRow]:
        req, votes = workflow_tables.requests, workflow_tables.approvals
        with self.lab.engines[self.mode].connect() as conn:
            query = sa.select(req).order_by(req.c.id.desc())
            if states is not None:
                query = query.where(req.c.state.in_(states))
            rows = conn.execute(query).all()
            ballots: dict[int, list[tuple[str, str, datetime]]] = {}
            for vote in conn.execute(sa.select(votes).order_by(votes.c.id)):
                ballots.setdefault(vote.request_id, []).append(
                    (vote.approver, vote.decision, vote.time)
                )
        return [
            RequestRow(
                int(r.id),
                r.kind,
                r.model,
                int(r.version),
                r.target_kind,
                r.target,
                r.state,
                r.requester,
                bool(r.archive_existing),
                r.applied_at,
                r.applied_by,
                _ws(r.workspace),
                r.model_created,
                r.version_created,
                tuple(ballots.get(int(r.id), ())),
            )
            for r in rows
        ]

    def _pick(self, states: tuple[str, ...], pick: int) -> RequestRow | None:
        found = self._requests(states)
        return found[min(pick, len(found) - 1)] if found else None

    def run(self, op: tuple[Any, ...]) -> None:
        """Make one operation through the stock client or the governance client."""
        name, *args = op
        self.step = name
        client = self.mlflow
        if name == "workspace":
            if self.mode == WORKSPACES:
                self.space = args[0]
        elif name == "apply":
            self._apply(*args)
        elif name in ("approve", "reject", "cancel"):
            self._vote(name, *args)
        elif name == "rename":
            user, model, new_name = args
            stored = self.before.models.get((_ws(self.space), self.key(model)))
            if self.attempt(user, lambda: client.rename_registered_model(model, new_name)):
                kinds = [
                    "gated" if fnmatch.fnmatchcase(n, GATED_MODELS) else "ungated"
                    for n in (stored[0] if stored else model, new_name)
                ]
                event("renamed: {} name -> {} name".format(*kinds))
        else:
            user, *rest = args
            self.attempt(user, self._call(name, *rest))

    def _call(self, name: str, *args: Any) -> Callable[[], Any]:
        """The client call a single-call operation makes."""
        client, gov = self.mlflow, self.gov
        if name == "create_model":
            (model,) = args
            return lambda: client.create_registered_model(model)
        if name == "create_version":
            (model,) = args
            return lambda: client.create_model_version(model, "file:///m")
        if name == "transition":
            model, version, stage, archive = args
            return lambda: client.transition_model_version_stage(
                model, version, stage, archive_existing_versions=archive
            )
        if name == "set_alias":
            model, alias, version = args
            return lambda: client.set_registered_model_alias(model, alias, version)
        if name == "delete_alias":
            model, alias = args
            return lambda: client.delete_registered_model_alias(model, alias)
        if name == "delete_version":
            model, version = args
            return lambda: client.delete_model_version(model, version)
        if name == "delete_model":
            (model,) = args
            return lambda: client.delete_registered_model(model)
        if name == "request":
            model, version, to = args
            return lambda: gov.request(model, version, to)
        assert name == "rollback", name
        model, to = args
        where = {"alias": to[1:]} if to.startswith("@") else {"stage": to}
        return lambda: gov.rollback(model, **where)

    def _vote(self, name: str, voters: tuple[str, ...] | str, pick: int) -> None:
        request = self._pick(("pending",) if name == "approve" else OPEN_STATES, pick)
        if request is None:
            return
        gov = self.gov
        for user in [voters] if isinstance(voters, str) else voters:
            if name == "approve":
                self.attempt(user, lambda: gov.approve(request.id))
            elif name == "reject":
                self.attempt(user, lambda: gov.reject(request.id, "no"))
            else:
                self.attempt(user, lambda: gov.cancel(request.id))

    def _apply(self, how: str, user: str | None, pick: int) -> None:
        request = self._pick(("approved",), pick) or self._pick(OPEN_STATES, pick)
        if request is None:
            return
        actor = user or request.requester
        client, gov = self.mlflow, self.gov
        model, version = request.model, request.version
        event(f"apply through {how}")
        if how == "workflow":
            self.attempt(actor, lambda: self.flow.apply(_who(actor), request.id))
        elif how == "promote":
            to = request.target if request.target_kind == "stage" else f"@{request.target}"
            self.attempt(actor, lambda: gov.promote(model, version, to))
        elif request.target_kind == "stage":
            self.attempt(
                actor,
                lambda: client.transition_model_version_stage(
                    model, version, request.target, request.archive_existing
                ),
            )
        else:
            self.attempt(
                actor, lambda: client.set_registered_model_alias(model, request.target, version)
            )

    # ------------------------------------------------------------------ the invariant

    def check(self, op: tuple[Any, ...]) -> None:
        """Everything the module docstring promises, after one step."""
        lab, mode = self.lab, self.mode
        after = lab.snapshot(mode)
        with lab.engines[mode].connect() as conn:
            rows = conn.execute(
                sa.select(audit_log).where(audit_log.c.id > self.mark).order_by(audit_log.c.id)
            ).all()
            head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).one()
        self._extends_chain(op, rows, (int(head.seq), str(head.hash)))
        requests = self._requests()
        allowed = [row for row in rows if row.decision != "deny"]
        self._replays(op, allowed, after)
        holders = self._justified(after, requests)
        self._entered(op, allowed, after, holders, requests)
        self._left(op, allowed, holders, requests)
        self.holders = holders
        self.before = after
        self.mark = max([self.mark, *(int(row.id) for row in rows)])
        event(f"gated targets held: {len(holders)}")

    def _extends_chain(self, op: tuple[Any, ...], rows: list[Any], head: tuple[int, str]) -> None:
        """The step's audit rows carry the hash chain on from the last verified row, and the
        chain head names the newest: with the whole chain verified when the example starts
        and ends, every chain verifies after every step."""
        last_id, last_hash = self.chain
        for row in rows:
            fields = dict(row._mapping)
            assert (row.id, row.prev_hash) == (last_id + 1, last_hash), f"after {op}: {row.id}"
            assert row_hash(fields) == row.hash, f"after {op}: row {row.id} is not its hash"
            last_id, last_hash = int(row.id), str(row.hash)
        assert head == (last_id, last_hash), f"after {op}: the chain head is not the newest row"
        self.chain = (last_id, last_hash)

    def verify_chain(self) -> tuple[int, str]:
        """The whole hash chain verifies; returns its head (id and hash)."""
        with self.lab.engines[self.mode].connect() as conn:
            verified = verify(conn)
        assert verified.ok, f"the audit chain does not verify: {verified.problem}"
        return verified.head_id, verified.head_hash

    def _satisfied(self, request: RequestRow) -> bool:
        """Whether the approvals given before the request was applied satisfy its gate."""
        gate = GATE_OF.get((request.target_kind, self._target(request)))
        if gate is None or request.applied_at is None:
            return False
        counted = {
            approver
            for approver, decision, time in request.approvals
            if decision == "approve"
            and approver in APPROVERS
            and approver != request.requester
            and (APPROVERS[approver] is None or request.workspace in APPROVERS[approver])
            and time <= request.applied_at
        }
        needed = (ROLLBACK_REQUIRED if request.kind == "rollback" else REQUIRED)[gate]
        return len(counted) >= needed

    def _target(self, request: RequestRow) -> str:
        """The request's target as the database compares it (aliases folded on MariaDB)."""
        return self.key(request.target) if request.target_kind == "alias" else request.target

    def _sanctions(self, request: RequestRow, holder: Holder) -> bool:
        """Whether ``request`` lets the version of ``holder`` hold its target."""
        ws, model_created, version_created, kind, target = holder
        same_version = (request.workspace, request.model_created, request.version_created) == (
            ws,
            model_created,
            version_created,
        )
        if not same_version or (request.target_kind, self._target(request)) != (kind, target):
            return False
        if request.kind == "review":
            return request.requester in BREAK_GLASS and request.state in ("pending", "approved")
        return request.state == "applied" and self._satisfied(request)

    def _justified(self, snap: Snapshot, requests: list[RequestRow]) -> dict[Holder, int]:
        """Each gated holder with the request that sanctions it; fails on one without."""
        justified: dict[Holder, int] = {}
        for holder, (name, version) in snap.gated().items():
            sanction = next((r for r in requests if self._sanctions(r, holder)), None)
            assert sanction is not None, (
                f"{name} v{version} holds {holder[3]} {holder[4]} (workspace {holder[0]}) with "
                "no applied, satisfied request nor break-glass review for this very version"
            )
            justified[holder] = self.holders.get(holder, sanction.id)
        return justified

    def _replays(self, op: tuple[Any, ...], rows: list[Any], after: Snapshot) -> None:
        """The step's audit rows turn the registry before it into the registry after it."""
        key = self.key
        models = set(self.before.models)
        stages = dict(self.before.stages)
        aliases = dict(self.before.aliases)
        for row in rows:
            ws, model = _ws(row.workspace), key(row.model) if row.model else ""
            whole_model = row.stage_after is None and row.alias is None
            if row.action == "rename_registered_model" and whole_model:
                new = key(json.loads(row.details or "{}")["new_name"])
                models.discard((ws, model))
                models.add((ws, new))
                stages = {_renamed(k, ws, model, new): v for k, v in stages.items()}
                aliases = {_renamed(k, ws, model, new): v for k, v in aliases.items()}
            elif row.action == "create_registered_model" and whole_model:
                models.add((ws, model))
            elif row.action == "delete_registered_model" and whole_model:
                models.discard((ws, model))
            if row.stage_after is not None:
                vkey = (ws, model, int(row.version))
                if row.stage_after == "Deleted_Internal":
                    stages.pop(vkey, None)
                else:
                    stages[vkey] = row.stage_after
            if row.alias is not None and (
                row.alias_before is not None or row.alias_after is not None
            ):
                akey = (ws, model, key(row.alias))
                if row.alias_after is None:
                    aliases.pop(akey, None)
                else:
                    aliases[akey] = int(row.alias_after)
        assert models == set(after.models), f"after {op}: models differ from the audit log"
        assert stages == after.stages, f"after {op}: stages differ from the audit log"
        assert aliases == after.aliases, f"after {op}: aliases differ from the audit log"

    def _entered(
        self,
        op: tuple[Any, ...],
        rows: list[Any],
        after: Snapshot,
        holders: dict[Holder, int],
        requests: list[RequestRow],
    ) -> None:
        """A new gated holder entered by an audited move naming its sanctioning request."""
        named = {r.id: r for r in requests}
        for holder in holders.keys() - self.holders.keys():
            name, version = after.gated()[holder]
            ws, kind, target = holder[0], holder[3], holder[4]
            entry = next(
                (
                    row
                    for row in reversed(rows)
                    if _ws(row.workspace) == ws
                    and row.model is not None
                    and self.key(row.model) == self.key(name)
                    and (
                        (kind == "stage" and row.stage_after == target and row.version == version)
                        or (
                            kind == "alias"
                            and row.alias is not None
                            and self.key(row.alias) == target
                            and row.alias_after == version
                        )
                    )
                ),
                None,
            )
            assert entry is not None, (
                f"after {op}: {name} v{version} now holds {kind} {target} but no audited move "
                "of this step put it there (carried in by a rename or a re-creation?)"
            )
            request = named.get(entry.request_id) if entry.request_id is not None else None
            assert request is not None and self._sanctions(request, holder), (
                f"after {op}: {name} v{version} entered {kind} {target} by audit row {entry.id} "
                f"({entry.actor}, request {entry.request_id}) without a sanctioning request"
            )
            if request.kind == "review":
                assert entry.actor == request.requester and entry.actor in BREAK_GLASS
                assert json.loads(entry.details or "{}").get("break_glass") is True
                event(f"gated {kind} entered by breaking glass")
            else:
                assert request.applied_by == entry.actor, (request, entry)
                event(f"gated {kind} entered through a {request.kind} request")
            holders[holder] = request.id

    def _left(
        self,
        op: tuple[Any, ...],
        rows: list[Any],
        holders: dict[Holder, int],
        requests: list[RequestRow],
    ) -> None:
        """A version left a gated target only by the hand of someone allowed to move it,
        or as part of applying an approved request (archiving, an alias re-pointed)."""
        sanctioned = {r.id for r in requests if r.state == "applied" or r.kind == "review"}
        was = self.before.gated()
        for holder in self.holders.keys() - holders.keys():
            name, version = was[holder]
            ws, kind, target = holder[0], holder[3], holder[4]
            moved = [
                row
                for row in rows
                if _ws(row.workspace) == ws
                and row.model is not None
                and self.key(row.model) == self.key(name)
                and (
                    (row.action == "rename_registered_model" and row.stage_after is None)
                    or (kind == "stage" and row.stage_before == target and row.version == version)
                    or (
                        kind == "alias"
                        and row.alias is not None
                        and self.key(row.alias) == target
                        and row.alias_before == version
                    )
                )
            ]
            assert moved, f"after {op}: {name} v{version} left {kind} {target} unaudited"
            for row in moved:
                assert row.actor in MAY_LEAVE or row.request_id in sanctioned, (
                    f"after {op}: {name} v{version} left {kind} {target} by audit row {row.id}, "
                    f"by {row.actor}, who may not move it (request {row.request_id})"
                )
            event(f"gated {kind} left")


def _renamed(key: tuple[Any, ...], ws: str, old: str, new: str) -> Any:
    if key[0] == ws and key[1] == old:
        return (ws, new, *key[2:])
    return key


@pytest.fixture
def lab(
    request: pytest.FixtureRequest,
    backend: str,
    tmp_path: Path,
    _sqlite_template: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_mlflow_stores: None,
) -> Iterator[Lab]:
    """The backend's registry, seeded in both modes, with its template rows kept."""
    if backend == "sqlite":
        urls = {}
        for mode in (PLAIN, WORKSPACES):
            path = tmp_path / f"{mode}.db"
            shutil.copy(_sqlite_template, path)
            urls[mode] = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("_postgres_db" if backend == "postgresql" else "_mysql_db")
        urls = {PLAIN: url, WORKSPACES: f"{url}?connect_timeout=30"}
    built = Lab(backend, urls, monkeypatch)
    try:
        yield built
    finally:
        built.close()


def _no_sequence_gets_past(lab: Lab, data: st.DataObject) -> None:
    mode = data.draw(st.sampled_from((PLAIN, WORKSPACES)), label="mode")
    operations = data.draw(_operations(lab.backend), label="operations")
    example = Example(lab, mode)
    event(f"mode: {mode}")
    for op in operations:
        for step in _steps(op):
            with _deadline(STEP_DEADLINE, f"{step}"):
                example.run(step)
            example.check(step)
    assert example.verify_chain() == example.chain


@pytest.mark.parametrize("backend", ["sqlite"])
@settings(PROFILE)
@given(data=st.data())
def test_no_operation_sequence_gets_past_a_gate(lab: Lab, data: st.DataObject) -> None:
    """No sequence of registry and workflow calls, by anyone, in any workspace, puts a
    version behind a gate without an applied, satisfied request or a break-glass review
    for that very version, lets one leave a gated target by an unentitled hand, writes
    anything half, breaks the chain, or crashes."""
    _no_sequence_gets_past(lab, data)


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
@settings(SERVER_PROFILE)
@given(data=st.data())
def test_no_operation_sequence_gets_past_a_gate_on_servers(lab: Lab, data: st.DataObject) -> None:
    """The same property on PostgreSQL and MariaDB (where names and aliases spelled in
    other cases and accents are the same names), with half the examples: a server
    round trip costs more than SQLite's, and the file keeps to its time budget."""
    _no_sequence_gets_past(lab, data)


# ====================================================================== the team.yaml property

MODEL = "fraud"
POLICY = EXAMPLES / "team.yaml"
USERS = ("alice", "bob", "carol", "frank", "dave", "erin", "oscar", "admin")
# Approvers and promoters come up more often, so that gated moves are reached at all.
APPROVER_USERS = st.sampled_from(("dave", "erin", "alice", "admin"))
TEAM_MOVERS = st.sampled_from(("carol", "frank", "carol", "alice", "admin", "oscar"))
TEAM_ANYONE = st.sampled_from(USERS)
GATED_ALIASES = ("champion", "prod")
PASSED = {"validation_status": "passed"}
TEAM_TARGETS = st.sampled_from(
    (Target("stage", "Production"), Target("alias", "champion"), Target("alias", "prod"))
)
TEAM_STAGES = ("Staging", "Production", "None")
TEAM_ALIASES = ("champion", "prod", "challenger")
ROLLBACKS = (Target("stage", "Production"), Target("alias", "champion"))


# 1-4 are seeded (1 and 2 ready for the gate), 5 exists once registered.
TEAM_VERSIONS = st.sampled_from((1, 1, 1, 2, 2, 2, 3, 4, 5))
# Who approves, in a row: both approvers of team.yaml, one, or someone who does not count.
TEAM_VOTERS = st.sampled_from(
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
TEAM_PICK = st.integers(0, 1)  # the newest open request, or the one before

# (weight, strategy) per operation: the weights make the multi-step paths through the
# gate (a request, then approvals) common enough for 25 examples to reach them.
TEAM_OPERATIONS = [
    (1, st.tuples(st.just("register"), TEAM_ANYONE, st.booleans())),
    (2, st.tuples(st.just("transition"), TEAM_MOVERS, TEAM_VERSIONS, st.sampled_from(TEAM_STAGES))),
    (2, st.tuples(st.just("set_alias"), TEAM_MOVERS, TEAM_VERSIONS, st.sampled_from(TEAM_ALIASES))),
    (1, st.tuples(st.just("delete_alias"), TEAM_MOVERS, st.sampled_from(TEAM_ALIASES))),
    (4, st.tuples(st.just("request"), TEAM_MOVERS, TEAM_VERSIONS, TEAM_TARGETS)),
    (6, st.tuples(st.just("approve"), TEAM_VOTERS, TEAM_PICK)),
    (1, st.tuples(st.just("reject"), APPROVER_USERS, TEAM_PICK)),
    (1, st.tuples(st.just("cancel"), TEAM_ANYONE, TEAM_PICK)),
    (2, st.tuples(st.just("rollback"), TEAM_MOVERS, st.sampled_from(ROLLBACKS))),
    (1, st.tuples(st.just("delete_version"), TEAM_ANYONE, TEAM_VERSIONS)),
]
SEQUENCES = st.lists(
    st.sampled_from(
        [i for i, (weight, _) in enumerate(TEAM_OPERATIONS) for _ in range(weight)]
    ).flatmap(lambda i: TEAM_OPERATIONS[i][1]),
    min_size=6,
    max_size=12,
)


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
    """Under team.yaml, every gated holder got there by an audited move naming a request
    that sanctioned it, and the audit log replays to the registry."""
    monkeypatch.setenv("MLFLOW_GOVERNANCE_POLICY", str(POLICY))
    registry = Registry(template, tmp_path / f"example-{len(list(tmp_path.iterdir()))}.db")
    try:
        for op in operations:
            registry.run(op)
        registry.check()
    finally:
        registry.close()


# ====================================================================== counterexamples

# Calls the registry property found failing, pinned here on their own. A strict xfail
# marks one the plugin does not handle yet (the property accepts it until then, saying
# where); the others are fixed and stay as regression tests.


def test_history_survives_renaming_a_model_to_its_own_name(
    sqlite_registry_uri: str, fresh_mlflow_stores: None
) -> None:
    """Renaming a model to the name it has is a legal MLflow call; afterwards the model's
    history (and every rollback, which reads it) must still answer. (The property found
    history walking such a rename back for ever; fixed since.)"""
    from mlflow_governance.client import GovernanceClient

    client = MlflowClient(registry_uri=sqlite_registry_uri)
    gov = GovernanceClient(sqlite_registry_uri, identity=_who("admin"))
    with acting_as(_who("admin")):
        client.create_registered_model("m")
        for _ in range(2):
            version = client.create_model_version("m", "file:///m").version
            client.transition_model_version_stage("m", version, "Production", True)
        client.rename_registered_model("m", "m")
        with _deadline(5, "GovernanceClient.history after renaming 'm' to 'm'"):
            assert [e["version"] for e in gov.history("m") if e["after"] == "Production"] == [1, 2]
        with _deadline(5, "GovernanceClient.rollback after renaming 'm' to 'm'"):
            assert gov.rollback("m", stage="Production")["version"] == 1


@pytest.mark.mysql
def test_a_rename_onto_a_taken_name_is_resource_already_exists(
    db_url_for: Callable[[str], str], fresh_mlflow_stores: None
) -> None:
    """Renaming a model onto the name of another model (both with versions) is refused as
    RESOURCE_ALREADY_EXISTS, as on SQLite and PostgreSQL, and changes nothing."""
    uri = "governed+" + db_url_for("mysql")
    client = MlflowClient(registry_uri=uri)
    with acting_as(_who("admin")):
        for name in ("fraud-a", "fraud-b"):
            client.create_registered_model(name)
            client.create_model_version(name, "file:///m")
        with pytest.raises(MlflowException) as refused:
            client.rename_registered_model("fraud-a", "fraud-b")
        assert refused.value.error_code == "RESOURCE_ALREADY_EXISTS", refused.value.message
        assert {m.name for m in client.search_registered_models()} == {"fraud-a", "fraud-b"}
