"""Every registry store method MLflow has is classified, governed where it writes, and audited.

The permission table in :mod:`mlflow_governance.method_permissions` is the plugin's promise that no
registry write escapes governance. These tests hold it to MLflow's actual store classes,
so a new MLflow release that adds a method fails here instead of adding an ungoverned write:

- every public method of ``AbstractStore`` and ``SqlAlchemyStore`` is in one table;
- every write is overridden by ``GovernedStore`` (it goes through ``_govern``);
- every delegating method is inherited, and a real call is audited as the write it lands in;
- every read, called for real, leaves the audit log as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow
import pytest
import sqlalchemy as sa
from mlflow.entities.webhook import WebhookEvent
from mlflow.store.model_registry.abstract_store import AbstractStore
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient

from mlflow_governance import method_permissions as perms
from mlflow_governance.audit.query import verify
from mlflow_governance.audit.tables import audit_log
from mlflow_governance.store import GovernedStore

MLFLOW_STORES = (AbstractStore, SqlAlchemyStore)

TABLES: Mapping[str, Any] = {
    "WRITE_PERMISSIONS": perms.WRITE_PERMISSIONS,
    "DELEGATING": perms.DELEGATING,
    "READ_PERMISSIONS": perms.READ_PERMISSIONS,
    "NOT_OPERATIONS": perms.NOT_OPERATIONS,
}

PROMPT = "cov-prompt"
MODEL = "cov-model"


def _public_methods() -> dict[str, str]:
    """Public callables of MLflow's registry store classes -> the class defining them."""
    methods: dict[str, str] = {}
    for cls in MLFLOW_STORES:
        for name in dir(cls):
            if not name.startswith("_") and callable(getattr(cls, name)):
                owner = next(k for k in cls.__mro__ if name in vars(k))
                methods.setdefault(name, f"{owner.__module__}.{owner.__qualname__}")
    return methods


# ---------------------------------------------------------------------- static checks


def test_every_public_store_method_is_classified() -> None:
    methods = _public_methods()
    assert len(methods) > 40, "the method listing found too little to be trusted"
    unclassified = sorted(m for m in methods if not any(m in table for table in TABLES.values()))
    assert not unclassified, "\n".join(
        f"{name} (defined in {methods[name]}) is in none of the tables of "
        "mlflow_governance/method_permissions.py."
        " Read MLflow's implementation and classify it: a registry "
        "write goes into WRITE_PERMISSIONS with the permission it needs AND gets an override "
        "in GovernedStore (mlflow_governance/store.py) that validates and calls _govern; a "
        "method MLflow implements only through other governed writes goes into DELEGATING "
        "with the write it lands in; a method that changes nothing in the registry goes into "
        "READ_PERMISSIONS; an attribute that is no operation goes into NOT_OPERATIONS. Then "
        "add it to the calls of tests/test_store_coverage.py."
        for name in unclassified
    )


def test_no_method_is_in_two_tables() -> None:
    seen: dict[str, str] = {}
    clashes = []
    for table_name, table in TABLES.items():
        for method in table:
            if method in seen:
                clashes.append(f"{method}: in {seen[method]} and {table_name}")
            seen[method] = table_name
    assert not clashes, "a method must have exactly one classification:\n" + "\n".join(clashes)


def test_delegating_methods_land_in_governed_writes() -> None:
    stray = {
        m: target for m, target in perms.DELEGATING.items() if target not in perms.WRITE_PERMISSIONS
    }
    assert not stray, f"DELEGATING targets must be WRITE_PERMISSIONS methods: {stray}"


@pytest.mark.parametrize("method", sorted(perms.WRITE_PERMISSIONS))
def test_write_method_is_overridden_by_the_governed_store(method: str) -> None:
    assert method in vars(GovernedStore), (
        f"{method} needs '{perms.WRITE_PERMISSIONS[method]}' but GovernedStore does not override "
        "it, so MLflow's implementation runs ungoverned and unaudited. Add an override in "
        "mlflow_governance/store.py that runs MLflow's validation and hands the call to "
        "self._govern."
    )


@pytest.mark.parametrize("method", sorted(perms.DELEGATING))
def test_delegating_method_is_inherited(method: str) -> None:
    assert method not in vars(GovernedStore), (
        f"GovernedStore overrides {method}, which perms.DELEGATING says is governed through "
        f"{perms.DELEGATING[method]}. Either remove the override or move {method} to "
        "WRITE_PERMISSIONS."
    )


# ---------------------------------------------------------------------- a populated registry


@dataclass
class World:
    """A governed SQLite registry with a model, a prompt and a webhook, plus a tracking store."""

    store: GovernedStore
    root: Path

    @cached_property
    def client(self) -> MlflowClient:
        return MlflowClient()

    @cached_property
    def experiment_id(self) -> str:
        return self.client.create_experiment(
            "coverage", artifact_location=(self.root / "artifacts").as_uri()
        )

    @cached_property
    def run_id(self) -> str:
        return self.client.create_run(self.experiment_id).info.run_id

    @cached_property
    def logged_model_id(self) -> str:
        return self.client.create_logged_model(self.experiment_id, name="lm").model_id

    @cached_property
    def trace_id(self) -> str:
        with mlflow.start_span("coverage") as span:
            span.set_inputs({"q": "hello"})
        return span.trace_id

    @cached_property
    def webhook_id(self) -> str:
        return self.store.list_webhooks()[0].webhook_id

    def audit_state(self) -> tuple[int, int, str]:
        """(rows, head id, head hash) after verifying the whole chain."""
        with self.store.engine.connect() as conn:
            result = verify(conn)
        assert result.ok, result
        return result.rows, result.head_id, result.head_hash

    def rows_after(self, last_id: int) -> list[sa.Row[Any]]:
        with self.store.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(audit_log).where(audit_log.c.id > last_id).order_by(audit_log.c.id)
                )
            )


@pytest.fixture
def world(
    sqlite_registry_uri: str,
    db_url_for: Callable[[str], str],
    tmp_path: Path,
    fresh_mlflow_stores: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    from mlflow_governance.entry import build_store

    # The webhook points at a closed local port and is never fired.
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    # The link_* reads reach the tracking store MLflow resolves globally.
    mlflow.set_tracking_uri(db_url_for("sqlite"))
    store = build_store(sqlite_registry_uri)
    store.create_registered_model(MODEL)
    for _ in range(2):
        store.create_model_version(MODEL, "file:///m")
    store.transition_model_version_stage(MODEL, 1, "Production", False)
    store.set_registered_model_alias(MODEL, "champion", 2)
    store.create_prompt(PROMPT, description="greeting", tags={"team": "nlp"})
    store.create_prompt_version(PROMPT, "Hello {{name}}", tags={"q": "ok"})
    store.create_prompt_version(PROMPT, "Hi {{name}}")
    store.set_prompt_alias(PROMPT, "prod", 1)
    store.create_webhook(
        "cov-hook", "https://127.0.0.1:9/hook", [WebhookEvent("model_version", "created")]
    )
    built = World(store, tmp_path)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", built.experiment_id)
    try:
        yield built
    finally:
        mlflow.set_tracking_uri(None)
        store.engine.dispose()


# ---------------------------------------------------------------------- delegating methods

#: One real call per delegating method, and the registered model its audit row names.
DELEGATING_CALLS: Mapping[str, tuple[Callable[[World], Any], str]] = {
    "create_prompt": (
        lambda w: w.store.create_prompt("cov-new", description="d", tags={"k": "v"}),
        "cov-new",
    ),
    "create_prompt_version": (
        lambda w: w.store.create_prompt_version(PROMPT, [{"role": "user", "content": "{{x}}"}]),
        PROMPT,
    ),
    "set_prompt_tag": (lambda w: w.store.set_prompt_tag(PROMPT, "owner", "ml"), PROMPT),
    "delete_prompt_tag": (lambda w: w.store.delete_prompt_tag(PROMPT, "team"), PROMPT),
    "set_prompt_alias": (lambda w: w.store.set_prompt_alias(PROMPT, "staging", 2), PROMPT),
    "delete_prompt_alias": (lambda w: w.store.delete_prompt_alias(PROMPT, "prod"), PROMPT),
    "set_prompt_version_tag": (
        lambda w: w.store.set_prompt_version_tag(PROMPT, 2, "reviewed", "yes"),
        PROMPT,
    ),
    "delete_prompt_version_tag": (
        lambda w: w.store.delete_prompt_version_tag(PROMPT, "1", "q"),
        PROMPT,
    ),
    "delete_prompt_version": (lambda w: w.store.delete_prompt_version(PROMPT, "2"), PROMPT),
    "delete_prompt": (lambda w: w.store.delete_prompt(PROMPT), PROMPT),
}


def test_every_delegating_method_has_a_real_call() -> None:
    assert set(DELEGATING_CALLS) == set(perms.DELEGATING), (
        "add a call for each DELEGATING method to DELEGATING_CALLS (and drop stale ones)"
    )


@pytest.mark.parametrize("method", sorted(perms.DELEGATING))
def test_delegating_call_is_audited_as_the_write_it_lands_in(method: str, world: World) -> None:
    call, model = DELEGATING_CALLS[method]
    _, head_id, _ = world.audit_state()
    call(world)
    rows = world.rows_after(head_id)
    target = perms.DELEGATING[method]
    assert any(r.action == target and r.model == model for r in rows), (
        f"{method} wrote no audit row for {target} on {model!r}: "
        f"{[(r.action, r.model, r.version) for r in rows]}"
    )
    assert {r.decision for r in rows} == {"allow"}
    world.audit_state()  # the chain still verifies


# ---------------------------------------------------------------------- reads

#: One real call per read method, on the populated registry.
READ_CALLS: Mapping[str, Callable[[World], Any]] = {
    "get_registered_model": lambda w: w.store.get_registered_model(MODEL),
    "search_registered_models": lambda w: w.store.search_registered_models(f"name = '{MODEL}'"),
    "get_latest_versions": lambda w: w.store.get_latest_versions(MODEL, ["Production"]),
    "get_model_version": lambda w: w.store.get_model_version(MODEL, 1),
    "get_model_version_download_uri": lambda w: w.store.get_model_version_download_uri(MODEL, 1),
    "search_model_versions": lambda w: w.store.search_model_versions(f"name = '{MODEL}'"),
    "get_model_version_by_alias": lambda w: w.store.get_model_version_by_alias(MODEL, "champion"),
    "search_prompts": lambda w: w.store.search_prompts(),
    "get_prompt": lambda w: w.store.get_prompt(PROMPT),
    "get_prompt_version": lambda w: w.store.get_prompt_version(PROMPT, 1),
    "get_prompt_version_by_alias": lambda w: w.store.get_prompt_version_by_alias(PROMPT, "prod"),
    "search_prompt_versions": lambda w: w.store.search_prompt_versions(PROMPT),
    "link_prompts_to_trace": lambda w: w.store.link_prompts_to_trace(
        [w.store.get_prompt_version(PROMPT, 1)], w.trace_id
    ),
    "link_prompt_version_to_model": lambda w: w.store.link_prompt_version_to_model(
        PROMPT, "1", w.logged_model_id
    ),
    "link_prompt_version_to_run": lambda w: w.store.link_prompt_version_to_run(
        PROMPT, "1", w.run_id
    ),
    "get_webhook": lambda w: w.store.get_webhook(w.webhook_id),
    "list_webhooks": lambda w: w.store.list_webhooks(),
    "list_webhooks_by_event": lambda w: w.store.list_webhooks_by_event(
        WebhookEvent("model_version", "created")
    ),
}


def test_every_read_method_has_a_real_call() -> None:
    assert set(READ_CALLS) == set(perms.READ_PERMISSIONS), (
        "add a call for each READ_PERMISSIONS method to READ_CALLS (and drop stale ones)"
    )


@pytest.mark.parametrize("method", sorted(perms.READ_PERMISSIONS))
def test_read_call_leaves_the_audit_log_unchanged(method: str, world: World) -> None:
    before = world.audit_state()
    result = READ_CALLS[method](world)
    assert world.audit_state() == before, f"{method} changed the audit log"
    if not method.startswith("link_"):
        assert result, f"{method} found nothing: the call did not read what the fixture made"


def test_link_reads_wrote_their_tags_on_the_tracking_side(world: World) -> None:
    # The link_* methods are classified as reads because they write only tracking-side tags;
    # check that they really did their work (and so were exercised for real above).
    for method in ("link_prompt_version_to_run", "link_prompt_version_to_model"):
        READ_CALLS[method](world)
    run_tags = world.client.get_run(world.run_id).data.tags
    model_tags = world.client.get_logged_model(world.logged_model_id).tags
    assert PROMPT in run_tags["mlflow.linkedPrompts"]
    assert PROMPT in model_tags["mlflow.linkedPrompts"]


# ---------------------------------------------------------------------- audit row targets


def test_model_deletion_is_audited_on_the_model_with_its_versions_as_side_effects(
    sqlite_registry_uri: str,
) -> None:
    from mlflow_governance.entry import build_store

    store = build_store(sqlite_registry_uri)
    store.create_registered_model(MODEL)
    for _ in range(3):
        store.create_model_version(MODEL, "file:///m")
    store.set_registered_model_alias(MODEL, "champion", 3)
    store.delete_model_version(MODEL, 2)
    with store.engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(audit_log.c.id))).scalar()
    store.delete_registered_model(MODEL)
    rows = World(store, Path()).rows_after(last)
    store.engine.dispose()

    main = [r for r in rows if '"side_effect"' not in (r.details or "")]
    side = {
        (r.version, r.stage_before, r.stage_after, r.alias)
        for r in rows
        if '"side_effect"' in (r.details or "")
    }
    assert [(r.action, r.model, r.version, r.stage_after) for r in main] == [
        ("delete_registered_model", MODEL, None, None)
    ]
    assert side == {
        (1, "None", "Deleted_Internal", None),
        (3, "None", "Deleted_Internal", None),
        (3, None, None, "champion"),
    }
