"""An approved move and a direct attempt at the same moment never open a way past the gate.

Two OS processes (this one and a spawned child), each with its own governed store,
engine and stock ``MlflowClient``, on PostgreSQL and MariaDB, under
``policies/race.yaml``. In each of 200 iterations alice's approved request moves a fresh
version into Production or @champion (her stock call, or ``Workflow.apply``) while, at
the same moment (both processes leave a ``multiprocessing`` barrier together), an
ordinary account without the right tries a direct move: bob demotes the current or the
incoming Production version or removes @champion, mallory or bob points @champion at
another version. The two roles alternate between the processes.

After every iteration, from the database:

- each version in Production or holding @champion has, for that very version (model
  and version creation times), an applied request whose approvals were given before it
  was applied, or the review of an admin's break-glass move;
- the direct attempt was refused with PERMISSION_DENIED, or it succeeded without
  changing any gated holder (it came after the move and found nothing gated to move);
- the apply succeeded, unless the attempt superseded its request first (bob's refused
  alias move opens a request of his own); when it succeeded, exactly one audited move
  names the request, the request says applied by alice, and the version holds the target;
- the audit log replays to the registry's stages and aliases and its chain verifies:
  no write was half applied.

On PostgreSQL the lock statement locks the version's row as well as the model's, so a
decision that waited for the lock sees the row as the write it waited for left it (the
second test forces that interleaving).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_governance.audit.history import history, holders_at
from mlflow_governance.audit.query import verify
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.exceptions import GovernanceError
from mlflow_governance.identity import SOURCE_ASSERTED, Identity, acting_as
from mlflow_governance.workflow.request_rows import Target
from mlflow_governance.workflow.tables import approvals, requests
from tests.workflow.conftest import Registry, make_registry

pytestmark = pytest.mark.slow

ITERATIONS = 200
MODEL = "race-m"
#: Never promoted: the version an attacker points @champion at.
OTHER = 2
#: Rounds between two verifications of the whole hash chain (it grows with every round).
VERIFY_EVERY = 20
#: Seconds either process waits for the other before the test fails (never reached in a
#: passing run: the barrier releases as soon as both arrive).
TIMEOUT = 120


@dataclass(frozen=True)
class Attempt:
    """One call either process makes when the barrier opens."""

    user: str
    call: str  # "transition", "set_alias", "delete_alias" or "apply"
    version: int | None = None
    stage: str | None = None
    archive: bool = False
    request_id: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What a call did: succeeded, or the error code and message it failed with."""

    ok: bool
    code: str | None = None
    message: str = ""


class Actor:
    """A process's own way into the registry: store, engine, stock client, workflow."""

    def __init__(self, url: str) -> None:
        from mlflow_governance.entry import build_store
        from mlflow_governance.workflow.promotion import Workflow

        uri = f"governed+{url}"
        self.store = build_store(uri)
        self.client = MlflowClient(registry_uri=uri)
        self.client._get_registry_client()  # build the client's store before the race
        self.flow = Workflow(self.store)

    def perform(self, attempt: Attempt) -> Outcome:
        """Make the call as its user; an error is reported, never raised."""
        who = Identity(attempt.user, SOURCE_ASSERTED)
        client = self.client
        with acting_as(who):
            try:
                if attempt.call == "transition":
                    assert attempt.version is not None and attempt.stage is not None
                    client.transition_model_version_stage(
                        MODEL, attempt.version, attempt.stage, attempt.archive
                    )
                elif attempt.call == "set_alias":
                    assert attempt.version is not None
                    client.set_registered_model_alias(MODEL, "champion", attempt.version)
                elif attempt.call == "delete_alias":
                    client.delete_registered_model_alias(MODEL, "champion")
                else:
                    assert attempt.request_id is not None
                    self.flow.apply(who, attempt.request_id)
            except (MlflowException, GovernanceError) as exc:
                return Outcome(False, exc.error_code, str(exc)[:500])
            except Exception:  # reported as a crash: the test fails on it
                return Outcome(False, "CRASH", traceback.format_exc())
        return Outcome(True)


def _child(url: str, barrier: Any, conn: Any) -> None:
    """The spawned process: make each call it is sent when the barrier opens."""
    import warnings

    warnings.filterwarnings("ignore")
    try:
        actor = Actor(url)
        conn.send("ready")
        while (attempt := conn.recv()) is not None:
            barrier.wait(timeout=TIMEOUT)
            conn.send(actor.perform(attempt))
    except BaseException:  # the parent must hear about it rather than wait forever
        conn.send(Outcome(False, "CRASH", traceback.format_exc()))


def _receive(conn: Any, child: Any, what: str) -> Any:
    """The child's next message; fails at once if the child died instead of sending it."""
    ready = multiprocessing.connection.wait([conn, child.sentinel], timeout=TIMEOUT)
    if conn in ready:
        return conn.recv()
    raise AssertionError(f"the child process did not {what} (exit code {child.exitcode})")


@dataclass(frozen=True)
class Round:
    """One iteration: the apply, the attempt against it, and what it is about."""

    target: Target
    version: int
    request_id: int
    apply: Attempt
    attack: Attempt


class Race:
    """The registry both processes act on, and what the parent checks after each round."""

    def __init__(self, reg: Registry) -> None:
        from mlflow_governance.workflow.promotion import Workflow

        self.reg = reg
        self.flow = Workflow(reg.store)
        self.engine = reg.store.engine

    def seed(self) -> None:
        """root makes the model; v1 holds Production and @champion by breaking glass."""
        reg = self.reg
        reg.run("root", lambda: reg.mlflow.create_registered_model(MODEL))
        for _ in range(OTHER):
            reg.run("alice", lambda: reg.mlflow.create_model_version(MODEL, "file:///m"))
        reg.run("root", lambda: reg.mlflow.transition_model_version_stage(MODEL, 1, "Production"))
        reg.run("root", lambda: reg.mlflow.set_registered_model_alias(MODEL, "champion", 1))

    def production(self) -> list[int]:
        return sorted(v for v, stage in self.reg.stages(MODEL).items() if stage == "Production")

    def prepare(self, i: int) -> Round:
        """A fresh version, alice's request for it, dave's approval; the attempt to race."""
        reg, alice = self.reg, Identity("alice", SOURCE_ASSERTED)
        current = self.production()
        version = int(
            reg.run("alice", lambda: reg.mlflow.create_model_version(MODEL, "file:///m")).version
        )
        kind = i % 5
        target = Target("stage", "Production") if kind in (0, 2) else Target("alias", "champion")
        archive = kind == 0
        request = self.flow.open_request(alice, MODEL, version, target, archive_existing=archive)
        approved = self.flow.approve(Identity("dave", SOURCE_ASSERTED), request.id)
        assert approved.state == "approved", approved
        if kind == 0:  # alice's stock call archiving the holder; bob demotes the holder
            apply = Attempt("alice", "transition", version, "Production", archive=True)
            attack = Attempt("bob", "transition", current[-1], "Archived")
        elif kind == 1:  # Workflow.apply; mallory points @champion elsewhere
            apply = Attempt("alice", "apply", request_id=request.id)
            attack = Attempt("mallory", "set_alias", OTHER)
        elif kind == 2:  # Workflow.apply; bob demotes the version coming in
            apply = Attempt("alice", "apply", request_id=request.id)
            attack = Attempt("bob", "transition", version, "Archived")
        elif kind == 3:  # alice's stock alias move; bob removes @champion
            apply = Attempt("alice", "set_alias", version)
            attack = Attempt("bob", "delete_alias")
        else:  # Workflow.apply; bob points @champion elsewhere (his refusal opens a request)
            apply = Attempt("alice", "apply", request_id=request.id)
            attack = Attempt("bob", "set_alias", OTHER)
        return Round(target, version, request.id, apply, attack)

    def audit_mark(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(audit_log.c.id))).scalar() or 0)

    # ------------------------------------------------------------------ the checks

    def check(self, i: int, race: Round, mark: int, applied: Outcome, attacked: Outcome) -> None:
        where = f"iteration {i} ({race.apply.call} vs {race.attack.user} {race.attack.call})"
        assert applied.code != "CRASH" and attacked.code != "CRASH", (where, applied, attacked)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(audit_log)
                .where(audit_log.c.id > mark, audit_log.c.decision == "allow")
                .order_by(audit_log.c.id)
            ).all()
            state = conn.execute(
                sa.select(requests.c.state, requests.c.applied_by).where(
                    requests.c.id == race.request_id
                )
            ).one()
        self._attempt_did_nothing_gated(where, race.attack, attacked, rows)
        holds = self._holds(race)
        if applied.ok:
            entered = [
                row
                for row in rows
                if row.request_id == race.request_id and _enters(row, race.target, race.version)
            ]
            assert len(entered) == 1, (where, entered)
            assert (state.state, state.applied_by) == ("applied", "alice"), (where, state)
            assert holds, f"{where}: the apply succeeded but v{race.version} does not hold it"
        else:
            # Only bob's refused alias move can stand in the apply's way: it opens his own
            # request for the target, which supersedes alice's before she applies it.
            assert state.state == "superseded", (where, applied, state)
            assert applied.code in ("RESOURCE_CONFLICT", "PERMISSION_DENIED"), (where, applied)
            assert not holds, (where, applied)
        self._every_holder_sanctioned(where)
        self._explained(where, verify_chain=i % VERIFY_EVERY == VERIFY_EVERY - 1)

    def _explained(self, where: str, *, verify_chain: bool) -> None:
        """The audit log replays to the registry's stages and aliases (no write was half
        applied); every ``VERIFY_EVERY`` rounds the whole hash chain is verified too."""
        with self.engine.connect() as conn:
            replayed = {(h.kind, h.name, h.version) for h in holders_at(history(conn, MODEL))}
            if verify_chain:
                verified = verify(conn)
                assert verified.ok, (where, verified.problem)
        actual = {
            ("stage", stage, version)
            for version, stage in self.reg.stages(MODEL).items()
            if stage in ("Staging", "Production")
        }
        champion = self.reg.alias(MODEL, "champion")
        if champion is not None:
            actual.add(("alias", "champion", champion))
        assert replayed == actual, f"{where}: the audit log does not replay to the registry"

    def _holds(self, race: Round) -> bool:
        if race.target.kind == "stage":
            return self.reg.stages(MODEL).get(race.version) == "Production"
        return self.reg.alias(MODEL, "champion") == race.version

    @staticmethod
    def _attempt_did_nothing_gated(
        where: str, attack: Attempt, outcome: Outcome, rows: list[Any]
    ) -> None:
        if not outcome.ok:
            assert outcome.code == "PERMISSION_DENIED", (where, outcome)
            return
        moved = [
            row
            for row in rows
            if row.actor == attack.user
            and (
                "Production" in (row.stage_before, row.stage_after)
                or (row.alias == "champion" and row.alias_before != row.alias_after)
            )
        ]
        assert not moved, f"{where}: {attack.user} moved a gated holder: {moved}"

    def _every_holder_sanctioned(self, where: str) -> None:
        """Every holder of Production or @champion has a request for that very version."""
        from mlflow.store.model_registry.dbmodels.models import (
            SqlModelVersion,
            SqlRegisteredModel,
            SqlRegisteredModelAlias,
        )

        mv, rm, al = SqlModelVersion, SqlRegisteredModel, SqlRegisteredModelAlias
        with self.engine.connect() as conn:
            model_created = conn.execute(
                sa.select(rm.creation_time).where(rm.name == MODEL)
            ).scalar_one()
            created = dict(
                conn.execute(sa.select(mv.version, mv.creation_time).where(mv.name == MODEL)).all()
            )
            holders = [
                ("stage", "Production", int(v))
                for (v,) in conn.execute(
                    sa.select(mv.version).where(mv.name == MODEL, mv.current_stage == "Production")
                )
            ]
            holders += [
                ("alias", "champion", int(v))
                for (v,) in conn.execute(
                    sa.select(al.version).where(al.name == MODEL, al.alias == "champion")
                )
            ]
            for kind, target, version in holders:
                found = conn.execute(
                    sa.select(
                        requests.c.id,
                        requests.c.kind,
                        requests.c.state,
                        requests.c.requester,
                        requests.c.applied_at,
                    ).where(
                        requests.c.target_kind == kind,
                        requests.c.target == target,
                        requests.c.model_created == model_created,
                        requests.c.version_created == created[version],
                    )
                ).all()
                assert any(self._sanctions(conn, r) for r in found), (
                    f"{where}: v{version} holds {kind} {target} without an applied, approved "
                    f"request or a break-glass review for it: {found}"
                )

    @staticmethod
    def _sanctions(conn: sa.Connection, request: Any) -> bool:
        if request.kind == "review":
            return bool(request.requester == "root")
        if request.state != "applied":
            return False
        votes = conn.execute(
            sa.select(approvals.c.approver).where(
                approvals.c.request_id == request.id,
                approvals.c.decision == "approve",
                approvals.c.approver == "dave",
                approvals.c.time <= request.applied_at,
            )
        ).all()
        return bool(votes) and request.requester != "dave"


def _enters(row: Any, target: Target, version: int) -> bool:
    if target.kind == "stage":
        return bool(row.stage_after == target.name and row.version == version)
    return bool(row.alias == target.name and row.alias_after == version)


@pytest.fixture
def race(
    backend: str, db_url_for: Any, monkeypatch: pytest.MonkeyPatch, fresh_mlflow_stores: None
) -> Iterator[tuple[Race, str]]:
    """The seeded registry under race.yaml, and its plain database URL."""
    url = db_url_for(backend)
    reg = make_registry(f"governed+{url}", monkeypatch, None)
    reg.use_policy("race")
    built = Race(reg)
    built.seed()
    yield built, url
    reg.store.engine.dispose()


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "postgresql",
            marks=pytest.mark.postgres,
        ),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_an_approved_move_and_a_direct_attempt_race(race: tuple[Race, str]) -> None:
    """Whatever the interleaving, the gate holds, the apply is whole, nothing is half written."""
    registry, url = race
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=_child, args=(url, barrier, theirs), daemon=True)
    child.start()
    try:
        actor = Actor(url)
        assert _receive(mine, child, "start") == "ready"
        started = time.monotonic()
        for i in range(ITERATIONS):
            race = registry.prepare(i)
            mark = registry.audit_mark()
            # The roles alternate, so that neither process is always the one that starts.
            child_applies = i % 2 == 1
            mine.send(race.apply if child_applies else race.attack)
            barrier.wait(timeout=TIMEOUT)
            ours = actor.perform(race.attack if child_applies else race.apply)
            other = _receive(mine, child, f"answer in iteration {i}")
            applied, attacked = (other, ours) if child_applies else (ours, other)
            registry.check(i, race, mark, applied, attacked)
        print(f"{ITERATIONS} races in {time.monotonic() - started:.1f}s")
    finally:
        with contextlib.suppress(OSError):  # the child may be gone already
            mine.send(None)
        child.join(timeout=TIMEOUT)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0


# ---------------------------------------------------------------------- one interleaving


def _lock_waits(engine: sa.Engine) -> int:
    """How many sessions of this database wait for a row lock right now."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            query = (
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        else:
            query = (
                "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
            )
        return int(conn.execute(sa.text(query)).scalar_one())


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "postgresql",
            marks=pytest.mark.postgres,
        ),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_a_demotion_that_waited_for_the_lock_decides_on_what_it_waited_for(
    race: tuple[Race, str],
) -> None:
    """The losing interleaving of the race, forced: alice's apply of v3 into Production
    holds the model's lock; bob's demotion of v3 (from None, which he may do) starts and
    waits for that lock; alice's move commits. bob's write would now take v3 out of
    Production, so the gate must refuse it, deciding on the stage v3 has once bob holds
    the lock, not on the one it had when he started waiting."""
    import threading

    registry, url = race
    reg = registry.reg
    version = int(
        reg.run("alice", lambda: reg.mlflow.create_model_version(MODEL, "file:///m")).version
    )
    alice = Identity("alice", SOURCE_ASSERTED)
    request = registry.flow.open_request(alice, MODEL, version, Target("stage", "Production"))
    registry.flow.approve(Identity("dave", SOURCE_ASSERTED), request.id)

    locked, bob_waits = threading.Event(), threading.Event()
    outcomes: dict[str, Outcome] = {}
    actor = Actor(url)
    watcher = sa.create_engine(url, poolclass=sa.pool.NullPool)

    wrote = threading.Event()

    def note_writes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name == "alice" and statement.lstrip().upper().startswith(
            ("UPDATE", "INSERT", "DELETE")
        ):
            wrote.set()

    def hold_the_lock(_conn: Any) -> None:
        # In alice's thread, as her move's transaction commits (holding the model's lock,
        # whatever form the lock takes): wait until bob is queued behind it.
        mine = threading.current_thread().name == "alice" and wrote.is_set()
        if mine and not locked.is_set():
            locked.set()
            assert bob_waits.wait(TIMEOUT), "bob never waited for the lock"

    def act(name: str, attempt: Attempt) -> None:
        outcomes[name] = actor.perform(attempt)

    engine = actor.store.engine
    sa.event.listen(engine, "before_cursor_execute", note_writes)
    sa.event.listen(engine, "commit", hold_the_lock)
    try:
        first = threading.Thread(
            target=act,
            name="alice",
            args=("alice", Attempt("alice", "apply", request_id=request.id)),
        )
        first.start()
        assert locked.wait(TIMEOUT), "alice's apply never came to commit a write"
        second = threading.Thread(
            target=act, name="bob", args=("bob", Attempt("bob", "transition", version, "Archived"))
        )
        second.start()
        deadline = time.monotonic() + TIMEOUT
        while _lock_waits(watcher) == 0:  # bob's statement reaches the lock queue
            assert time.monotonic() < deadline and second.is_alive(), outcomes
        bob_waits.set()
        first.join(TIMEOUT)
        second.join(TIMEOUT)
    finally:
        bob_waits.set()
        sa.event.remove(engine, "before_cursor_execute", note_writes)
        sa.event.remove(engine, "commit", hold_the_lock)
        watcher.dispose()
    assert outcomes["alice"].ok, outcomes
    stage = reg.stages(MODEL)[version]
    assert outcomes["bob"].code == "PERMISSION_DENIED", f"bob moved v{version} to {stage}"
    assert stage == "Production"
    registry._explained("after the forced interleaving", verify_chain=True)
