"""Differential test: the stock client sees the same registry through the governed store.

One scenario drives every registry entry point a user reaches without knowing about the
plugin: ``mlflow.register_model``, each ``MlflowClient`` registry method, model URIs
(``models:/name/1``, ``@alias``, ``/Production``, ``/latest``) loaded and used for a
prediction, the prompt registry and webhook CRUD. It runs once against a plain SQLite
registry and once against the governed one (default policy: audit-only), and the
normalised results must be equal, expected failures included (same error code and
message). On the governed run every write step must add exactly the audit rows it names,
every read step none, and the chain must verify.
"""

from __future__ import annotations

import enum
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_governance.audit.query import AuditFilter, list_rows, verify
from mlflow_governance.audit.tables import audit_log

#: Fields that legitimately differ between two runs of the same calls. ``user_id`` is stamped
#: with the actor by the governed store on purpose (MLflow leaves it empty).
VOLATILE_FIELDS = frozenset({"creation_timestamp", "last_updated_timestamp", "user_id"})

MODEL = "diff-model"
OTHER = "diff-other"
COPY = "diff-copy"
PROMPT = "diff-prompt"
MODEL_URIS = (
    f"models:/{MODEL}/1",
    f"models:/{MODEL}@champion",
    f"models:/{MODEL}/Production",
    f"models:/{MODEL}/latest",
)


@dataclass
class Step:
    """One call of the scenario: its normalised outcome and the audit rows it added."""

    label: str
    outcome: Any
    expected_writes: tuple[str, ...]
    audit_actions: list[str] | None = None
    side_effect_actions: list[str] = field(default_factory=list)


@dataclass
class Recorder:
    """Runs the scenario's calls and records what each returned or raised."""

    root: Path
    audit_engine: sa.Engine | None = None
    steps: list[Step] = field(default_factory=list)
    placeholders: dict[str, str] = field(default_factory=dict)
    last_audit_id: int = 0

    def name(self, value: str, placeholder: str) -> None:
        """Replace a run-specific value (an id, the temporary root) wherever it appears."""
        self.placeholders[value] = placeholder

    def audit_rows_after(self, last_id: int) -> list[tuple[int, str, bool]]:
        """(id, action, is a side effect) of the audit rows written after row ``last_id``."""
        assert self.audit_engine is not None
        query = (
            sa.select(audit_log.c.id, audit_log.c.action, audit_log.c.details)
            .where(audit_log.c.id > last_id)
            .order_by(audit_log.c.id)
        )
        with self.audit_engine.connect() as conn:
            return [
                (row.id, row.action, json.loads(row.details or "{}").get("side_effect", False))
                for row in conn.execute(query)
            ]

    def call(self, label: str, fn: Callable[[], Any], writes: Sequence[str] = ()) -> Any:
        """Run ``fn`` and record its normalised result, or its error code and message.

        Args:
            label: Names the step in a failure report.
            fn: The call.
            writes: The actions of the audit rows the governed store must record for it,
                in order (empty for reads and failed calls). Rows marked as side effects
                (a version archived by a transition, an alias removed with its version)
                come on top and must carry one of these actions.

        Returns:
            What ``fn`` returned (None when it raised).
        """
        result = None
        try:
            result = fn()
            outcome: Any = ("ok", self.normalise(result))
        except MlflowException as exc:
            outcome = ("error", exc.error_code, self.normalise(exc.message))
        except NotImplementedError:
            # The message names the store class, which differs by design.
            outcome = ("unsupported",)
        _join_prompt_linkers()
        step = Step(label, outcome, tuple(writes))
        if self.audit_engine is not None:
            rows = self.audit_rows_after(self.last_audit_id)
            step.audit_actions = [action for _, action, side in rows if not side]
            step.side_effect_actions = [action for _, action, side in rows if side]
            self.last_audit_id = rows[-1][0] if rows else self.last_audit_id
        self.steps.append(step)
        return result

    def normalise(self, value: Any) -> Any:
        """Plain data with volatile fields dropped and run-specific strings replaced."""
        if isinstance(value, enum.Enum):
            return self.normalise(value.value)
        if isinstance(value, str):
            for real, placeholder in sorted(self.placeholders.items(), key=lambda kv: -len(kv[0])):
                value = value.replace(real, placeholder)
            return value
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float):
            return round(value, 6)
        if isinstance(value, np.ndarray):
            return self.normalise(value.tolist())
        if isinstance(value, dict):
            return {
                self.normalise(k): self.normalise(v)
                for k, v in sorted(value.items())
                if k not in VOLATILE_FIELDS
            }
        if isinstance(value, (list, tuple)):
            items = [self.normalise(v) for v in value]
            # PagedList: the page token is part of the answer.
            return {"items": items, "token": value.token} if hasattr(value, "token") else items
        return {
            "__type__": type(value).__name__,
            **self.normalise({name: getattr(value, name) for name in _properties(type(value))}),
        }


def _join_prompt_linkers() -> None:
    # ``register_prompt`` and ``load_prompt`` tag the prompt with the active experiment in a
    # background thread (a registry write: ``set_prompt_tag``). Waiting for those threads
    # keeps each step's outcome and audit rows its own.
    for thread in threading.enumerate():
        if thread.name.startswith("link_prompt_to_experiment_thread-"):
            thread.join()


def _properties(cls: type) -> list[str]:
    names = {
        name
        for klass in cls.__mro__
        for name, attr in vars(klass).items()
        if isinstance(attr, (property, cached_property)) and not name.startswith("_")
    }
    return sorted(names)


def _log_model(root: Path) -> tuple[str, str, str]:
    """Train and log a tiny LinearRegression; return (run id, logged model id, model URI)."""
    from sklearn.linear_model import LinearRegression

    client = MlflowClient()
    experiment_id = client.create_experiment(
        "differential", artifact_location=(root / "artifacts").as_uri()
    )
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LinearRegression().fit(x, 2.0 * x[:, 0] + 1.0)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    return run.info.run_id, info.model_id, info.model_uri


def _predict(uri: str) -> list[float]:
    loaded = mlflow.pyfunc.load_model(uri)
    return [round(float(v), 6) for v in loaded.predict(np.array([[4.0], [10.0]]))]


def scenario(rec: Recorder) -> None:
    """The calls a stock user makes, in an order that reaches every registry method."""
    run_id, model_id, model_uri = _log_model(rec.root)
    rec.name(str(rec.root), "<root>")
    rec.name(rec.root.as_uri(), "<root-uri>")
    rec.name(run_id, "<run-id>")
    rec.name(model_id, "<logged-model-id>")
    client = MlflowClient()
    call = rec.call

    # ------------------------------------------------------------ registered models
    call(
        "register_model from the logged model",
        lambda: mlflow.register_model(model_uri, MODEL),
        writes=["create_registered_model", "create_model_version"],
    )
    call(
        "register_model again from runs:/",
        lambda: mlflow.register_model(f"runs:/{run_id}/model", MODEL),
        writes=["create_model_version"],
    )
    call(
        "create_registered_model",
        lambda: client.create_registered_model(OTHER, tags={"team": "risk"}, description="d"),
        writes=["create_registered_model"],
    )
    call("create_registered_model: duplicate", lambda: client.create_registered_model(OTHER))
    call("create_registered_model: invalid name", lambda: client.create_registered_model(""))
    call("get_registered_model", lambda: client.get_registered_model(MODEL))
    call("get_registered_model: missing", lambda: client.get_registered_model("nope"))
    call("search_registered_models", client.search_registered_models)
    call(
        "search_registered_models: filter and order",
        lambda: client.search_registered_models("name LIKE 'diff-%'", order_by=["name DESC"]),
    )
    page = call(
        "search_registered_models: page 1", lambda: client.search_registered_models(max_results=1)
    )
    call(
        "search_registered_models: page 2",
        lambda: client.search_registered_models(max_results=1, page_token=page.token),
    )
    call(
        "update_registered_model",
        lambda: client.update_registered_model(MODEL, description="regression"),
        writes=["update_registered_model"],
    )
    call(
        "update_registered_model: missing",
        lambda: client.update_registered_model("nope", description="x"),
    )
    call(
        "set_registered_model_tag",
        lambda: client.set_registered_model_tag(MODEL, "k", "v"),
        writes=["set_registered_model_tag"],
    )
    call(
        "set_registered_model_tag: second",
        lambda: client.set_registered_model_tag(MODEL, "owner", "ml"),
        writes=["set_registered_model_tag"],
    )
    call(
        "delete_registered_model_tag",
        lambda: client.delete_registered_model_tag(MODEL, "k"),
        writes=["delete_registered_model_tag"],
    )
    call(
        "delete_registered_model_tag: missing key",
        lambda: client.delete_registered_model_tag(MODEL, "absent"),
        writes=["delete_registered_model_tag"],
    )
    call("get_registered_model after edits", lambda: client.get_registered_model(MODEL))

    # ------------------------------------------------------------ model versions
    call(
        "create_model_version",
        lambda: client.create_model_version(
            MODEL, model_uri, run_id=run_id, tags={"stage": "candidate"}, description="v3"
        ),
        writes=["create_model_version"],
    )
    call(
        "create_model_version: missing model",
        lambda: client.create_model_version("nope", model_uri),
    )
    call("get_model_version", lambda: client.get_model_version(MODEL, "3"))
    call("get_model_version: missing", lambda: client.get_model_version(MODEL, "99"))
    call("get_model_version: invalid", lambda: client.get_model_version(MODEL, "x"))
    call(
        "search_model_versions",
        lambda: client.search_model_versions(f"name = '{MODEL}'", order_by=["version_number"]),
    )
    call(
        "search_model_versions: by run",
        lambda: client.search_model_versions(f"run_id = '{run_id}'"),
    )
    call("search_model_versions: bad filter", lambda: client.search_model_versions("bogus"))
    call(
        "update_model_version",
        lambda: client.update_model_version(MODEL, "1", description="first"),
        writes=["update_model_version"],
    )
    call(
        "set_model_version_tag",
        lambda: client.set_model_version_tag(MODEL, "1", "q", "ok"),
        writes=["set_model_version_tag"],
    )
    call(
        "set_model_version_tag: missing version",
        lambda: client.set_model_version_tag(MODEL, "99", "q", "ok"),
    )
    call(
        "delete_model_version_tag",
        lambda: client.delete_model_version_tag(MODEL, "3", "stage"),
        writes=["delete_model_version_tag"],
    )

    # ------------------------------------------------------------ stages
    call(
        "transition 1 to Staging",
        lambda: client.transition_model_version_stage(MODEL, "1", "staging"),
        writes=["transition_model_version_stage"],
    )
    call(
        "transition 2 to Production",
        lambda: client.transition_model_version_stage(MODEL, "2", "Production"),
        writes=["transition_model_version_stage"],
    )
    call(
        "transition 3 to Production archiving the holder",
        lambda: client.transition_model_version_stage(
            MODEL, "3", "Production", archive_existing_versions=True
        ),
        writes=["transition_model_version_stage"],
    )
    call(
        "transition: invalid stage",
        lambda: client.transition_model_version_stage(MODEL, "1", "Prod"),
    )
    call(
        "transition: archive to a non-active stage",
        lambda: client.transition_model_version_stage(
            MODEL, "1", "Archived", archive_existing_versions=True
        ),
    )
    call("get_latest_versions", lambda: client.get_latest_versions(MODEL))
    call(
        "get_latest_versions: Production",
        lambda: client.get_latest_versions(MODEL, stages=["Production"]),
    )
    call(
        "search_model_versions after transitions",
        lambda: client.search_model_versions(f"name = '{MODEL}'", order_by=["version_number"]),
    )

    # ------------------------------------------------------------ aliases
    call(
        "set_registered_model_alias",
        lambda: client.set_registered_model_alias(MODEL, "champion", "1"),
        writes=["set_registered_model_alias"],
    )
    call(
        "set_registered_model_alias: move",
        lambda: client.set_registered_model_alias(MODEL, "champion", "2"),
        writes=["set_registered_model_alias"],
    )
    call(
        "set_registered_model_alias: second",
        lambda: client.set_registered_model_alias(MODEL, "old", "1"),
        writes=["set_registered_model_alias"],
    )
    call(
        "set_registered_model_alias: reserved",
        lambda: client.set_registered_model_alias(MODEL, "latest", "1"),
    )
    call(
        "set_registered_model_alias: missing version",
        lambda: client.set_registered_model_alias(MODEL, "x", "99"),
    )
    call("get_model_version_by_alias", lambda: client.get_model_version_by_alias(MODEL, "champion"))
    call(
        "get_model_version_by_alias: latest",
        lambda: client.get_model_version_by_alias(MODEL, "latest"),
    )
    call(
        "delete_registered_model_alias",
        lambda: client.delete_registered_model_alias(MODEL, "old"),
        writes=["delete_registered_model_alias"],
    )
    call(
        "get_model_version_by_alias: deleted",
        lambda: client.get_model_version_by_alias(MODEL, "old"),
    )
    call("get_registered_model with aliases", lambda: client.get_registered_model(MODEL))
    call(
        "get_model_version_download_uri", lambda: client.get_model_version_download_uri(MODEL, "1")
    )

    # ------------------------------------------------------------ model URIs, loaded and used
    for uri in MODEL_URIS:
        call(f"load and predict {uri}", lambda uri=uri: _predict(uri))

    # ------------------------------------------------------------ copy, rename, delete
    call(
        "copy_model_version to a new model",
        lambda: client.copy_model_version(f"models:/{MODEL}@champion", COPY),
        writes=["create_registered_model", "create_model_version", "copy_model_version"],
    )
    call(
        "copy_model_version to an existing model",
        lambda: client.copy_model_version(f"models:/{MODEL}/1", COPY),
        writes=["create_model_version", "copy_model_version"],
    )
    call("load and predict the copy", lambda: _predict(f"models:/{COPY}/2"))
    call(
        "rename_registered_model",
        lambda: client.rename_registered_model(OTHER, "diff-renamed"),
        writes=["rename_registered_model"],
    )
    call(
        "rename_registered_model: onto an existing name",
        lambda: client.rename_registered_model("diff-renamed", MODEL),
    )
    call("get_registered_model: old name", lambda: client.get_registered_model(OTHER))
    call(
        "delete_model_version holding an alias",
        lambda: client.delete_model_version(MODEL, "2"),
        writes=["delete_model_version"],
    )
    call("get_model_version: deleted", lambda: client.get_model_version(MODEL, "2"))
    call(
        "get_model_version_by_alias: removed with its version",
        lambda: client.get_model_version_by_alias(MODEL, "champion"),
    )
    call("delete_model_version: missing", lambda: client.delete_model_version(MODEL, "99"))
    call(
        "delete_registered_model",
        lambda: client.delete_registered_model("diff-renamed"),
        writes=["delete_registered_model"],
    )
    call("delete_registered_model: missing", lambda: client.delete_registered_model("diff-renamed"))
    call(
        "search_registered_models at the end",
        lambda: client.search_registered_models(order_by=["name"]),
    )

    # ------------------------------------------------------------ prompts
    genai = mlflow.genai
    call(
        "register_prompt",
        lambda: genai.register_prompt(
            PROMPT, "Hello {{name}}", commit_message="first", tags={"lang": "en"}
        ),
        writes=["create_registered_model", "create_model_version", "set_registered_model_tag"],
    )
    call(
        "register_prompt: second version",
        lambda: genai.register_prompt(PROMPT, "Hi {{name}}!", tags={"lang": "en-GB"}),
        writes=["set_registered_model_tag", "create_model_version"],
    )
    call("register_prompt: name of a model", lambda: genai.register_prompt(MODEL, "x"))
    call(
        "load_prompt by version",
        lambda: genai.load_prompt(f"prompts:/{PROMPT}/1", cache_ttl_seconds=0),
    )
    call(
        "load_prompt by name and version",
        lambda: genai.load_prompt(PROMPT, version=2, cache_ttl_seconds=0).format(name="Ann"),
    )
    call(
        "load_prompt: missing version",
        lambda: genai.load_prompt(f"prompts:/{PROMPT}/9", cache_ttl_seconds=0),
    )
    call(
        "set_prompt_alias",
        lambda: genai.set_prompt_alias(PROMPT, "production", 1),
        writes=["set_registered_model_alias"],
    )
    call(
        "load_prompt by alias",
        lambda: genai.load_prompt(f"prompts:/{PROMPT}@production", cache_ttl_seconds=0),
    )
    call(
        "set_prompt_tag",
        lambda: genai.set_prompt_tag(PROMPT, "owner", "nlp"),
        writes=["set_registered_model_tag"],
    )
    call("get_prompt_tags", lambda: genai.get_prompt_tags(PROMPT))
    call(
        "delete_prompt_tag",
        lambda: genai.delete_prompt_tag(PROMPT, "owner"),
        writes=["delete_registered_model_tag"],
    )
    call(
        "set_prompt_version_tag",
        lambda: genai.set_prompt_version_tag(PROMPT, 1, "q", "ok"),
        writes=["set_model_version_tag"],
    )
    call(
        "delete_prompt_version_tag",
        lambda: genai.delete_prompt_version_tag(PROMPT, 1, "q"),
        writes=["delete_model_version_tag"],
    )
    call("search_prompts", genai.search_prompts)
    call("search_prompts: filter", lambda: genai.search_prompts(f"name = '{PROMPT}'"))
    call(
        "search_registered_models hides prompts",
        lambda: [m.name for m in client.search_registered_models()],
    )
    call(
        "delete_prompt_alias",
        lambda: genai.delete_prompt_alias(PROMPT, "production"),
        writes=["delete_registered_model_alias"],
    )
    call(
        "load_prompt by deleted alias",
        lambda: genai.load_prompt(f"prompts:/{PROMPT}@production", cache_ttl_seconds=0),
    )
    call("get_prompt", lambda: client.get_prompt(PROMPT))
    call("search_prompt_versions", lambda: client.search_prompt_versions(PROMPT))
    call(
        "delete_prompt_version",
        lambda: client.delete_prompt_version(PROMPT, "2"),
        writes=["delete_model_version"],
    )
    call("get_prompt_version: deleted", lambda: client.get_prompt_version(PROMPT, "2"))
    call(
        "delete_prompt",
        lambda: client.delete_prompt(PROMPT),
        writes=["delete_registered_model"],
    )
    call("get_prompt: deleted", lambda: client.get_prompt(PROMPT))

    # ------------------------------------------------------------ webhooks (no HTTP fired)
    hook = call(
        "create_webhook",
        lambda: client.create_webhook(
            "diff-hook",
            "https://127.0.0.1:9/registry",
            ["model_version.created", "registered_model.created"],
            description="ci",
            secret="s3cret",
        ),
        writes=["create_webhook"],
    )
    assert hook is not None, rec.steps[-1]
    rec.name(hook.webhook_id, "<webhook-id>")
    rec.steps[-1].outcome = ("ok", rec.normalise(hook))
    call(
        "create_webhook: invalid url",
        lambda: client.create_webhook("bad", "ftp://x", ["model_version.created"]),
    )
    call("get_webhook", lambda: client.get_webhook(hook.webhook_id))
    call("list_webhooks", client.list_webhooks)
    call(
        "update_webhook",
        lambda: client.update_webhook(
            hook.webhook_id,
            description="nightly",
            status="DISABLED",
            events=["model_version_alias.created"],
        ),
        writes=["update_webhook"],
    )
    call("get_webhook after update", lambda: client.get_webhook(hook.webhook_id))
    # MLflow's SQL store leaves test_webhook to the server (which fires the HTTP call):
    # through the store both registries refuse it alike and nothing is audited.
    call("test_webhook", lambda: client.test_webhook(hook.webhook_id))
    call("update_webhook: missing", lambda: client.update_webhook("nope", description="x"))
    call(
        "delete_webhook", lambda: client.delete_webhook(hook.webhook_id), writes=["delete_webhook"]
    )
    call("get_webhook: deleted", lambda: client.get_webhook(hook.webhook_id))
    call("list_webhooks: empty", client.list_webhooks)


@pytest.fixture
def run_scenario(
    tmp_path: Path,
    db_url_for: Callable[[str], str],
    fresh_mlflow_stores: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str], Recorder]]:
    """Run the scenario with the global URIs on fresh databases of its own.

    The databases are copies of the suite's migrated template (MLflow's full schema, so
    they serve as tracking stores too, plus our tables, which a plain store ignores).
    """
    # The webhook points at a closed local port: nothing is ever delivered.
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    engines: list[sa.Engine] = []

    def run(kind: str) -> Recorder:
        root = tmp_path / kind
        root.mkdir()
        registry_db = db_url_for("sqlite")
        mlflow.set_tracking_uri(db_url_for("sqlite"))
        mlflow.set_registry_uri(registry_db if kind == "plain" else f"governed+{registry_db}")
        engine = sa.create_engine(registry_db, poolclass=sa.pool.NullPool)
        engines.append(engine)
        rec = Recorder(root, audit_engine=engine if kind == "governed" else None)
        scenario(rec)
        return rec

    try:
        yield run
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for engine in engines:
            engine.dispose()


def test_governed_registry_answers_like_plain_mlflow(
    run_scenario: Callable[[str], Recorder],
) -> None:
    plain = run_scenario("plain")
    governed = run_scenario("governed")
    # The plain registry never saw the plugin: its governance tables stayed empty.
    assert plain.audit_engine is None

    assert [s.label for s in governed.steps] == [s.label for s in plain.steps]
    differences = [
        f"{p.label}:\n  plain:    {p.outcome!r}\n  governed: {g.outcome!r}"
        for p, g in zip(plain.steps, governed.steps, strict=True)
        if p.outcome != g.outcome
    ]
    assert not differences, "governed and plain registries differ:\n" + "\n".join(differences)

    # The normalisation must not have flattened the answers into something trivially equal.
    outcomes = {s.label: s.outcome for s in plain.steps}
    for uri in MODEL_URIS:
        assert outcomes[f"load and predict {uri}"] == ("ok", [9.0, 21.0])
    assert outcomes["get_registered_model: missing"][:2] == ("error", "RESOURCE_DOES_NOT_EXIST")
    archived = outcomes["search_model_versions after transitions"][1]["items"]
    assert [(v["version"], v["current_stage"]) for v in archived] == [
        (1, "Staging"),
        (2, "Archived"),
        (3, "Production"),
    ]
    # Expected failures are part of the comparison; make sure the scenario has both kinds.
    kinds = {s.outcome[0] for s in plain.steps}
    assert kinds == {"ok", "error", "unsupported"}

    unaudited = [
        f"{s.label}: expected audit actions {list(s.expected_writes)}, "
        f"got {s.audit_actions} (side effects: {s.side_effect_actions})"
        for s in governed.steps
        if s.audit_actions != list(s.expected_writes)
        or not set(s.side_effect_actions) <= set(s.expected_writes)
    ]
    assert not unaudited, "audit rows do not match the writes:\n" + "\n".join(unaudited)

    assert governed.audit_engine is not None
    with governed.audit_engine.connect() as conn:
        result = verify(conn)
        rows = list_rows(conn, AuditFilter())
    assert result.ok, result
    assert (
        result.rows
        == len(rows)
        == sum(len(s.audit_actions or []) + len(s.side_effect_actions) for s in governed.steps)
    )
    side_effects = {s.label: s.side_effect_actions for s in governed.steps}
    assert side_effects["transition 3 to Production archiving the holder"] == [
        "transition_model_version_stage"
    ]
    assert side_effects["delete_model_version holding an alias"] == ["delete_model_version"]
    assert {r["decision"] for r in rows} == {"allow"}


def test_governed_store_stamps_the_actor_the_plain_store_leaves_empty(
    db_url_for: Callable[[str], str], fresh_mlflow_stores: None, as_user: Any
) -> None:
    # The one deliberate difference the differential test hides: ``user_id``.
    as_user("dana")
    tracking_uri = db_url_for("sqlite")
    governed = MlflowClient(tracking_uri, registry_uri="governed+" + db_url_for("sqlite"))
    plain = MlflowClient(tracking_uri, registry_uri=db_url_for("sqlite"))
    stamped = []
    for client in (plain, governed):
        client.create_registered_model("m")
        stamped.append(client.create_model_version("m", "file:///x").user_id)
    assert stamped == [None, "dana"]


# ---------------------------------------------------------------------- error precedence
# When a call has more than one thing wrong, MLflow reports them in a fixed order and the
# stock client (and REST: 404 vs 400) depends on it. The governed store runs MLflow's
# validators itself before governing the call; it must keep MLflow's order.

PRECEDENCE_CASES = [
    pytest.param(
        lambda s: s.update_webhook("missing-hook"),
        id="update_webhook: missing id",
    ),
    pytest.param(
        lambda s: s.set_registered_model_alias("missing", "a", 1),
        id="set_registered_model_alias: missing model",
    ),
    pytest.param(
        lambda s: s.transition_model_version_stage("missing", 1, "Production", True),
        id="transition: missing model",
    ),
    pytest.param(
        lambda s: s.update_webhook("missing-hook", url="ftp://hooks.example/x"),
        id="update_webhook: missing id and a bad url",
    ),
    pytest.param(
        lambda s: s.update_webhook("missing-hook", name="-bad-"),
        id="update_webhook: missing id and a bad name",
    ),
    pytest.param(
        lambda s: s.update_webhook("missing-hook", events=[]),
        id="update_webhook: missing id and no events",
    ),
    pytest.param(
        lambda s: s.transition_model_version_stage("m", 1, "archived", True),
        id="transition: archive into an inactive stage, as the caller spelled it",
    ),
    pytest.param(
        lambda s: s.transition_model_version_stage("m", "x", "Archived", True),
        id="transition: bad version and archive into an inactive stage",
    ),
    pytest.param(
        lambda s: s.rename_registered_model(None, None),
        id="rename: both names missing",
    ),
]


@pytest.mark.parametrize("call", PRECEDENCE_CASES)
def test_errors_come_in_mlflow_order(
    call: Callable[[Any], Any], db_url_for: Callable[[str], str]
) -> None:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    from mlflow_governance.entry import build_store

    errors = []
    for store in (
        SqlAlchemyStore(db_url_for("sqlite")),
        build_store("governed+" + db_url_for("sqlite")),
    ):
        store.create_registered_model("m")
        store.create_model_version("m", "file:///x")
        with pytest.raises(MlflowException) as info:
            call(store)
        errors.append((info.value.error_code, info.value.message))
        store.engine.dispose()
    assert errors[1] == errors[0]
