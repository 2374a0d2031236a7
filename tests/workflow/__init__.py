"""Helpers of the workflow tests and of the scenario matrix (``tests/test_scenarios.py``).

Nothing here is a fixture: the fixtures live beside the tests that use them and call
these functions, so the matrix and the workflow tests share code without sharing a
conftest.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner, Result
from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "policies"
POLICIES = Path(__file__).resolve().parent / "policies"


def policy_path(name: str) -> str:
    """A policy file by name: this folder's ``policies/`` first, then the examples."""
    for folder in (POLICIES, EXAMPLES):
        path = folder / f"{name}.yaml"
        if path.is_file():
            return str(path)
    raise FileNotFoundError(f"no policy {name}.yaml in {POLICIES} or {EXAMPLES}")


# ---------------------------------------------------------------------- refusals


def assert_refused(exc: BaseException, *, actor: str, action: str, rule: str, allow: str) -> str:
    """Check a refusal: PERMISSION_DENIED naming who, what, the rule and what would allow it.

    Returns:
        The message, for further checks.
    """
    assert isinstance(exc, MlflowException), repr(exc)
    assert exc.error_code == "PERMISSION_DENIED", exc.message
    return assert_refusal_text(exc.message, actor=actor, action=action, rule=rule, allow=allow)


def assert_refusal_text(message: str, *, actor: str, action: str, rule: str, allow: str) -> str:
    """Check the text of a refusal (``Refused: WHO may not WHAT on ...: why (rule: R). hint``)."""
    assert message.startswith(f"Refused: {actor} may not {action} on "), message
    assert f"(rule: {rule})" in message, message
    assert allow in message.split(f"(rule: {rule})", 1)[1], message
    return message


def request_id_in(message: str) -> int:
    """The request a refusal names (``Request #N is open. Follow it …``)."""
    found = re.search(r"[Rr]equest #(\d+) is open\b", message)
    assert found is not None, message
    # The requester is told where to follow it, not an approver's command.
    assert "mlflow-governance approve" not in message, message
    return int(found.group(1))


# ---------------------------------------------------------------------- command line


class Cli:
    """The ``mlflow-governance`` command line, run in-process as a given user.

    Args:
        registry_uri: The governed registry the commands act on.
    """

    def __init__(self, registry_uri: str) -> None:
        self.registry_uri = registry_uri

    def __call__(self, user: str, *args: str) -> Result:
        from mlflow_governance.cli import main

        env = {"MLFLOW_REGISTRY_URI": self.registry_uri, "MLFLOW_TRACKING_USERNAME": user}
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    def json(self, user: str, *args: str, exit_code: int = 0) -> Any:
        """Run with ``--json`` and parse standard output."""
        result = self(user, *args, "--json")
        assert result.exit_code == exit_code, (result.exit_code, result.output)
        return json.loads(result.stdout)

    def refused(self, user: str, *args: str, exit_code: int = 1) -> str:
        """Run a command that must be refused; return the refusal without ``Error: ``."""
        result = self(user, *args)
        assert result.exit_code == exit_code, (result.exit_code, result.output)
        text = result.stderr.strip()
        assert text.startswith("Error: Refused: "), result.output
        return text[len("Error: ") :]


# ---------------------------------------------------------------------- registries


@contextlib.contextmanager
def no_policy() -> Iterator[None]:
    """Run without a policy file (the built-in audit-only default): for seeding."""
    saved = os.environ.pop("MLFLOW_GOVERNANCE_POLICY", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MLFLOW_GOVERNANCE_POLICY"] = saved


@contextlib.contextmanager
def acting(user: str) -> Iterator[None]:
    """Act as ``user`` on a store directly (no environment involved)."""
    from mlflow_governance.identity import SOURCE_ASSERTED, Identity, acting_as

    with acting_as(Identity(user, SOURCE_ASSERTED)):
        yield


def seed_registry(
    template: Path, target: Path, plan: Callable[[Any], None], tracking_uri: str | None = None
) -> Path:
    """Copy the empty registry ``template`` to ``target`` and run ``plan(store)`` on it.

    The plan runs under the audit-only default, so every step is recorded in the audit
    log (and the history a rollback reads) without any policy standing in the way.
    MLflow resolves ``models:/<id>`` sources through the tracking URI, hence the argument.
    """
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    from mlflow_governance.store import GovernedStore

    shutil.copy(template, target)
    url = f"sqlite:///{target}"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    if tracking_uri is not None:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    try:
        with no_policy():
            store = GovernedStore(url, tracking_uri=tracking_uri)
            plan(store)
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    store.engine.dispose()
    engine = SqlAlchemyStore._engine_map.pop(url, None)
    if engine is not None:
        engine.dispose()
    return target


def add_version(
    store: Any,
    model: str,
    *,
    creator: str = "alice",
    source: str = "file:///models/m",
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    stages: Sequence[str] = (),
    aliases: Sequence[str] = (),
) -> int:
    """Register a version as ``creator`` (creating the model if needed) and place it."""
    from mlflow.exceptions import MlflowException as _Missing

    with acting(creator):
        try:
            store.get_registered_model(model)
        except _Missing:
            store.create_registered_model(model)
        tag_list = [ModelVersionTag(k, v) for k, v in (tags or {}).items()]
        created = store.create_model_version(model, source, run_id=run_id, tags=tag_list)
    version = int(created.version)
    with acting("seed-admin"):
        for stage in stages:
            archive = stage == "Production"
            store.transition_model_version_stage(model, version, stage, archive)
        for alias in aliases:
            store.set_registered_model_alias(model, alias, version)
    return version


def stages_of(store: Any, model: str) -> dict[int, str]:
    """Version -> stage, read without read checks (and without a filter string, so any
    legal name works)."""
    import sqlalchemy as sa
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

    with store.ManagedSessionMaker() as session:
        rows = session.execute(
            sa.select(SqlModelVersion.version, SqlModelVersion.current_stage).where(
                SqlModelVersion.name == model,
                SqlModelVersion.current_stage != "Deleted_Internal",
            )
        ).all()
    return {int(version): str(stage) for version, stage in rows}


def alias_of(store: Any, model: str, alias: str) -> int | None:
    """The version an alias points at, or None."""
    try:
        return int(store.raw_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def backdate(store: Any, table: str, column: str, delta: timedelta, **where: Any) -> int:
    """Move a timestamp of workflow rows into the past (expiry tests: no sleeping).

    Args:
        store: The governed store.
        table: ``requests`` or ``approvals``.
        column: The timestamp column, e.g. ``created_at`` or ``time``.
        delta: How far back.
        where: Column equalities selecting the rows.

    Returns:
        How many rows moved.
    """
    from mlflow_governance.workflow.tables import approvals, requests

    tbl = {"requests": requests, "approvals": approvals}[table]
    conditions = [tbl.c[key] == value for key, value in where.items()]
    with store.engine.begin() as conn:
        rows = conn.execute(sa.select(tbl.c.id, tbl.c[column]).where(*conditions)).all()
        for row in rows:
            conn.execute(sa.update(tbl).where(tbl.c.id == row[0]).values({column: row[1] - delta}))
    return len(rows)


# ---------------------------------------------------------------------- tracking


@dataclass(frozen=True)
class Tracking:
    """A SQLite tracking store with real runs and logged models, for gate checks.

    Attributes:
        uri: The tracking URI (set it as ``MLFLOW_TRACKING_URI``).
        good_run: A run with ``accuracy`` 0.97 and ``latency_ms`` 120.
        bad_run: A run with ``accuracy`` 0.8.
        signed_model: URI of a scikit-learn model logged with a signature.
        unsigned_model: URI of the same model logged without one.
    """

    uri: str
    good_run: str
    bad_run: str
    signed_model: str
    unsigned_model: str


def tracking_assets(base: Path) -> Tracking:
    """The shared tracking store, built once per test session.

    MLflow creates a SQLite tracking database by running all its migrations, which takes
    tens of seconds on a busy machine, so the store is built once under ``base`` (the
    session's temporary root, shared by the xdist workers) behind a lock file, and only
    read afterwards.
    """
    folder = base / "workflow-tracking"
    folder.mkdir(exist_ok=True)
    with open(base / "workflow-tracking.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "assets.json"
        if not done.exists():
            done.write_text(json.dumps(_build_tracking(folder)))
    return Tracking(**json.loads(done.read_text()))


def session_root(basetemp: Path) -> Path:
    """The temporary folder shared by every xdist worker of this session."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


def _build_tracking(folder: Path) -> dict[str, str]:
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    uri = f"sqlite:///{folder / 'tracking.db'}"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        experiment = mlflow.create_experiment(
            "gate-checks", artifact_location=str(folder / "artifacts")
        )
        x = np.array([[0.0], [1.0], [2.0], [3.0]])
        y = np.array([0, 0, 1, 1])
        fitted = LogisticRegression().fit(x, y)
        with mlflow.start_run(experiment_id=experiment) as good:
            mlflow.log_metrics({"accuracy": 0.97, "latency_ms": 120})
            # pip_requirements given: inferring them starts a subprocess per model.
            signed = mlflow.sklearn.log_model(
                fitted, name="model", signature=infer_signature(x, y), pip_requirements=[]
            )
            unsigned = mlflow.sklearn.log_model(fitted, name="unsigned", pip_requirements=[])
        with mlflow.start_run(experiment_id=experiment) as bad:
            mlflow.log_metric("accuracy", 0.8)
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return {
        "uri": uri,
        "good_run": good.info.run_id,
        "bad_run": bad.info.run_id,
        "signed_model": signed.model_uri,
        "unsigned_model": unsigned.model_uri,
    }
