"""What "nothing lost and nothing half-done" means, checked against a real database.

After a fault, three things must hold:

- every write a client saw succeed is in the registry and has its ``allow`` audit row,
  and every refusal a client was given has its ``deny`` row;
- the registry is exactly what its audit log says (replaying the ``allow`` rows gives
  the registered models, the versions with their stages and the aliases, no more and no
  less), so no change exists without its row and no row without its change;
- ``mlflow-governance audit verify`` finds the chain intact, and ``audit reconcile``
  finds no difference.

:func:`replay` is this suite's own oracle, written from the audit row format alone and
independent of the product's code, so the product's own reconciliation can be checked
against it rather than against itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

from mlflow_governance.cli import main
from mlflow_governance.identity import Identity, acting_as

#: Decisions under which the change itself was made (``would_deny``: an audit-only
#: policy let it through).
_APPLIED = ("allow", "would_deny")
_DELETED = "Deleted_Internal"

#: The administrator of the fault tests' policy, who may read the audit log.
ADMIN = "admin"

#: What a client saw: an answer with a status, or no answer at all.
OK = "ok"
NO_RESPONSE = "no response"
REFUSED = "PERMISSION_DENIED"


@dataclass(frozen=True)
class Outcome:
    """One write a client asked for, and what it saw.

    Attributes:
        action: The store method, e.g. ``create_model_version``.
        model: The registered model.
        version: The version (None for a creation whose answer never came).
        stage: The target stage of a transition.
        alias: The alias set.
        result: :data:`OK`, :data:`NO_RESPONSE`, or the error code or HTTP status seen.
    """

    action: str
    model: str
    version: int | None = None
    stage: str | None = None
    alias: str | None = None
    result: str = OK


@dataclass
class RegistryState:
    """Registered models, versions with their stage, and aliases."""

    models: set[str] = field(default_factory=set)
    versions: dict[tuple[str, int], str] = field(default_factory=dict)
    aliases: dict[tuple[str, str], int] = field(default_factory=dict)


def audit_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every audit row, oldest first, as dictionaries."""
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM governance_audit_log ORDER BY id"))
        return [dict(row._mapping) for row in result]


def replay(rows: Iterable[dict[str, Any]]) -> RegistryState:
    """The registry state the audit log describes."""
    state = RegistryState()
    for row in rows:
        if row["decision"] not in _APPLIED:
            continue
        model = row["model"]
        if row["action"] == "create_registered_model" and row["version"] is None:
            state.models.add(model)
        elif row["action"] == "delete_registered_model" and row["version"] is None:
            state.models.discard(model)
        if row["version"] is not None and row["stage_after"] is not None:
            key = (model, int(row["version"]))
            if row["stage_after"] == _DELETED:
                state.versions.pop(key, None)
            else:
                state.versions[key] = row["stage_after"]
        if row["alias"] is not None and (row["alias_before"], row["alias_after"]) != (None, None):
            if row["alias_after"] is None:
                state.aliases.pop((model, row["alias"]), None)
            else:
                state.aliases[(model, row["alias"])] = int(row["alias_after"])
    return state


def registry_state(engine: sa.Engine) -> RegistryState:
    """The registry's current state, read from MLflow's tables."""
    state = RegistryState()
    with engine.connect() as conn:
        state.models = {r.name for r in conn.execute(sa.text("SELECT name FROM registered_models"))}
        state.versions = {
            (r.name, int(r.version)): r.current_stage
            for r in conn.execute(
                sa.text("SELECT name, version, current_stage FROM model_versions")
            )
            if r.current_stage != _DELETED
        }
        state.aliases = {
            (r.name, r.alias): int(r.version)
            for r in conn.execute(
                sa.text("SELECT name, alias, version FROM registered_model_aliases")
            )
        }
    return state


def differences(expected: RegistryState, actual: RegistryState) -> list[str]:
    """Every way the registry differs from what the audit log says, in words."""
    problems: list[str] = []
    for model in sorted(actual.models - expected.models):
        problems.append(f"model {model!r} exists without its audit row")
    for model in sorted(expected.models - actual.models):
        problems.append(f"model {model!r} is in the audit log but not in the registry")
    for key in sorted(set(expected.versions) | set(actual.versions)):
        logged, real = expected.versions.get(key), actual.versions.get(key)
        if logged != real:
            problems.append(f"version {key}: audit log says stage {logged}, registry {real}")
    for key in sorted(set(expected.aliases) | set(actual.aliases)):
        logged_v, real_v = expected.aliases.get(key), actual.aliases.get(key)
        if logged_v != real_v:
            problems.append(f"alias {key}: audit log says version {logged_v}, registry {real_v}")
    return problems


def unaudited_successes(outcomes: Sequence[Outcome], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Writes a client saw succeed that have no ``allow`` audit row."""
    allowed = [r for r in rows if r["decision"] in _APPLIED]
    missing: list[str] = []
    for seen in outcomes:
        if seen.result != OK:
            continue
        if not any(_row_records(row, seen) for row in allowed):
            missing.append(f"{seen} succeeded for its client but has no allow audit row")
    return missing


def unaudited_refusals(outcomes: Sequence[Outcome], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Refusals a client was given that have no ``deny`` audit row."""
    denied = [r for r in rows if r["decision"] == "deny"]
    missing: list[str] = []
    for seen in outcomes:
        if seen.result != REFUSED:
            continue
        if not any(
            (r["action"], r["model"], r["version"]) == (seen.action, seen.model, seen.version)
            for r in denied
        ):
            missing.append(f"{seen} was refused to its client but has no deny audit row")
    return missing


def _row_records(row: dict[str, Any], seen: Outcome) -> bool:
    if row["action"] != seen.action or row["model"] != seen.model:
        return False
    if seen.version is not None and row["version"] != seen.version:
        return False
    if seen.stage is not None and row["stage_after"] != seen.stage:
        return False
    return seen.alias is None or (row["alias"] == seen.alias and row["alias_after"] == seen.version)


def audit_verify(db_url: str) -> dict[str, Any]:
    """``mlflow-governance audit verify --json``; asserts the chain is intact."""
    data = _cli_json(db_url, "verify")
    assert data["ok"], f"audit verify: {data}"
    return data


def audit_reconcile(db_url: str) -> dict[str, Any]:
    """``mlflow-governance audit reconcile --json``; asserts it finds no difference."""
    data = _cli_json(db_url, "reconcile")
    assert data["ok"] and not data["differences"], f"audit reconcile: {data}"
    return data


def _cli_json(db_url: str, command: str) -> dict[str, Any]:
    """Run ``mlflow-governance audit <command> --json`` as the policy's admin; exit 0."""
    # In a test acting as someone else, the identity in context wins over the variable.
    with acting_as(Identity(ADMIN, "asserted")):
        result = CliRunner().invoke(
            main,
            ["audit", command, "--registry-uri", f"governed+{db_url}", "--json"],
            env={"MLFLOW_TRACKING_USERNAME": ADMIN},
            catch_exceptions=False,
        )
    assert result.exit_code == 0, f"audit {command} exited {result.exit_code}: {result.output}"
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def assert_nothing_lost(db_url: str, outcomes: Sequence[Outcome] = ()) -> dict[str, Any]:
    """Check every invariant on ``db_url``; fail naming each difference.

    Returns:
        What was checked: row count, registry size, client outcomes by result.
    """
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        rows = audit_rows(engine)
        actual = registry_state(engine)
    finally:
        engine.dispose()
    problems = (
        differences(replay(rows), actual)
        + unaudited_successes(outcomes, rows)
        + unaudited_refusals(outcomes, rows)
    )
    unattributed = [r["id"] for r in rows if r["action"] == "unattributed_write"]
    if unattributed:
        problems.append(f"writes outside any governed call, audit rows {unattributed}")
    assert not problems, "\n".join(problems)
    verified = audit_verify(db_url)
    reconciled = audit_reconcile(db_url)
    # The product's reconciliation and this suite's replay read the same log alike.
    assert (reconciled["versions"], reconciled["aliases"]) == (
        len(actual.versions),
        len(actual.aliases),
    ), reconciled
    counts: dict[str, int] = {}
    for seen in outcomes:
        counts[seen.result] = counts.get(seen.result, 0) + 1
    return {
        "audit_rows": verified["rows"],
        "versions": len(actual.versions),
        "aliases": len(actual.aliases),
        "outcomes": counts,
    }
