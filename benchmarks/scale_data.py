"""A synthetic registry with a long history, loaded in bulk, for ``benchmarks/scale.py``.

The audit rows are chained by the plugin's own code (``_chain`` in
``mlflow_governance.audit.writer``, which the governed write path numbers, stamps and
hashes its rows with), twenty thousand rows per call: if the hash formula changes, the
generated log follows, and ``audit verify`` checks it like any other. Rows go in with
PostgreSQL's COPY (multi-row INSERTs on the other databases), MLflow's tables over
MLflow's own table definitions, so their columns and defaults are MLflow's. Nothing here
goes through the store one call at a time: a million governed calls would take hours.

The history is a random but reproducible (seeded) interleaving of what a busy registry
sees: models created on first use, versions registered, tags set, stage transitions
(Production with ``archive_existing_versions``, whose archived predecessors get rows of
their own as side effects), alias moves and deletions, description edits, and refusals
by the policy (no binding, a gate, a read of a model outside the reader's scope). Some
models are much busier than others (weights falling as ``1/sqrt(rank)``), as in a real
company where a few flagship models are retrained every day. The registry's tables end in
the state the audit log describes: each version's stage, each alias holder, each tag.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

#: Ten business domains; model ``i`` belongs to ``DOMAINS[i % 10]``.
DOMAINS = (
    "ads",
    "churn",
    "forecast",
    "fraud",
    "nlp",
    "pricing",
    "ranking",
    "risk",
    "supply",
    "vision",
)
#: What the benchmark's reader may read: two domains of ten, a fifth of the registry.
READER_GLOBS = ("churn-*", "fraud-*")

_SCIENTISTS = tuple(f"ds-{n:03d}" for n in range(200))
_PIPELINES = ("svc-train", "svc-deploy", "svc-nightly")
_RELEASE = tuple(f"rm-{n}" for n in range(5))
_AGENT = "mlflow-python-client/3.17.2"

#: Non-create actions and their weights (creates are scheduled separately).
_ACTIONS = (
    ("tag", 30),
    ("staging", 15),
    ("production", 8),
    ("archive", 5),
    ("alias", 15),
    ("alias_delete", 2),
    ("describe", 5),
    ("deny_gate", 8),
    ("deny_alias", 5),
    ("deny_read", 5),
    ("deny_register", 2),
)


def model_name(index: int) -> str:
    """The name of model ``index``, e.g. ``fraud-model-0003``."""
    return f"{DOMAINS[index % len(DOMAINS)]}-model-{index:04d}"


@dataclass
class _Model:
    name: str
    quota: int  # versions still to register
    versions: int = 0
    stages: dict[int, str] = field(default_factory=dict)  # versions not in stage None
    aliases: dict[str, int] = field(default_factory=dict)
    tags: dict[int, str] = field(default_factory=dict)  # validation_status per version
    descriptions: dict[int, str] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0
    version_times: list[int] = field(default_factory=list)
    version_users: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """The registry being generated, and the audit entries that describe it.

    Args:
        models: How many registered models.
        versions: How many model versions in all.
        audit_rows: How many audit rows in all (at least ``models + versions``).
        seed: Seed of the random choices.
    """

    models: int
    versions: int
    audit_rows: int
    seed: int = 10
    state: list[_Model] = field(init=False)

    def __post_init__(self) -> None:
        if self.audit_rows < self.models + self.versions:
            raise ValueError(
                f"{self.audit_rows} audit rows cannot record {self.models} models and "
                f"{self.versions} versions: at least {self.models + self.versions} are needed"
            )
        if self.versions < self.models:
            raise ValueError("give every model at least one version (--versions >= --models)")
        self.rng = random.Random(self.seed)
        weights = [1 / (rank + 1) ** 0.5 for rank in range(self.models)]
        total = sum(weights)
        # Every model gets one version; the rest follow the weights.
        spare = self.versions - self.models
        quotas = [1 + int(spare * w / total) for w in weights]
        for index in range(self.versions - sum(quotas)):
            quotas[index % self.models] += 1
        # Busy models are spread over the name space, not all in the first domain.
        order = list(range(self.models))
        self.rng.shuffle(order)
        self.state = [_Model(model_name(i), 0) for i in range(self.models)]
        for rank, index in enumerate(order):
            self.state[index].quota = quotas[rank]
        self.weights = [0.0] * self.models
        for rank, index in enumerate(order):
            self.weights[index] = weights[rank]
        self._creates = [i for i, m in enumerate(self.state) for _ in range(m.quota)]
        self.rng.shuffle(self._creates)
        self.busiest = model_name(order[0])

    # ------------------------------------------------------------------ the audit log

    def entries(self, identity: Callable[[str], Any], entry: Callable[..., Any]) -> Iterator[Any]:
        """Yield the audit entries of the whole history, oldest first.

        Args:
            identity: Builds the plugin's ``Identity`` for a user name.
            entry: The plugin's ``AuditEntry`` class.
        """
        rng = self.rng
        actions, action_weights = zip(*_ACTIONS, strict=True)
        people = {u: identity(u) for u in (*_SCIENTISTS, *_PIPELINES, *_RELEASE, "reader")}
        remaining = self.audit_rows
        pending_models = self.models
        picks: list[int] = []
        kinds: list[str] = []
        while remaining:
            reserved = len(self._creates) + pending_models
            if remaining == reserved or (reserved and rng.random() < reserved / remaining):
                index = self._creates.pop()
                model = self.state[index]
                now = _now_ms()
                if model.versions == 0:
                    pending_models -= 1
                    remaining -= 1
                    model.created_ms = now
                    yield entry(
                        action="create_registered_model",
                        identity=people[rng.choice(_PIPELINES)],
                        decision="allow",
                        model=model.name,
                        **_granted(model.name, "register", "contributor", 1),
                    )
                model.versions += 1
                model.version_times.append(now)
                model.updated_ms = now
                user = rng.choice(_PIPELINES[:1] + _SCIENTISTS[:40])
                model.version_users.append(user)
                remaining -= 1
                yield entry(
                    action="create_model_version",
                    identity=people[user],
                    decision="allow",
                    model=model.name,
                    version=model.versions,
                    stage_after="None",
                    details={"source": f"models:/m-{rng.getrandbits(64):016x}"},
                    **_granted(model.name, "register", "contributor", 1),
                )
                continue
            if not picks:
                picks = rng.choices(range(self.models), self.weights, k=4096)
                kinds = rng.choices(actions, action_weights, k=4096)
            model = self.state[picks.pop()]
            kind = kinds.pop()
            if kind == "production":
                # One row more per version it archives; the rest of the budget belongs to
                # the scheduled creates, so a move that would not fit is not made.
                held = sum(1 for s in model.stages.values() if s == "Production")
                if 1 + held > remaining - reserved:
                    kind = "deny_read"
            rows = list(self._event(model, kind, people, entry))
            remaining -= len(rows)
            yield from rows

    def _event(
        self, model: _Model, kind: str, people: dict[str, Any], entry: Callable[..., Any]
    ) -> Iterator[Any]:
        rng = self.rng
        if model.versions == 0 or kind == "deny_read":
            # Someone outside the model's domain tries to read it.
            yield entry(
                action="read",
                identity=people["reader"],
                decision="deny",
                model=model.name,
                reason=f"reader has no binding granting 'read' on model '{model.name}'; "
                f"bindings[3] grants it only on models {', '.join(READER_GLOBS)}",
                rule="default-deny",
            )
            return
        version = rng.randint(max(1, model.versions - 5), model.versions)
        scientist = people[rng.choice(_SCIENTISTS)]
        releaser = people[rng.choice(_RELEASE)]
        if kind == "tag":
            status = rng.choice(("passed", "passed", "failed", "pending"))
            model.tags[version] = status
            yield entry(
                action="set_model_version_tag",
                identity=people[_PIPELINES[0]],
                decision="allow",
                model=model.name,
                version=version,
                details={"key": "validation_status", "value": status},
                **_granted(model.name, "edit", "contributor", 1),
            )
        elif kind in ("staging", "archive", "production"):
            target = {"staging": "Staging", "archive": "Archived", "production": "Production"}
            stage = target[kind]
            before = model.stages.get(version, "None")
            if before == stage:
                return
            archive = kind == "production"
            actor = releaser if archive else scientist
            grant = _granted(model.name, f"transition:{stage}", "release-manager", 2)
            yield entry(
                action="transition_model_version_stage",
                identity=actor,
                decision="allow",
                model=model.name,
                version=version,
                stage_before=before,
                stage_after=stage,
                details={"archive_existing_versions": archive, "stage": stage},
                **grant,
            )
            self._set_stage(model, version, stage)
            if archive:
                for other in sorted(v for v, s in model.stages.items() if s == stage):
                    if other == version:
                        continue
                    self._set_stage(model, other, "Archived")
                    yield entry(
                        action="transition_model_version_stage",
                        identity=actor,
                        decision="allow",
                        model=model.name,
                        version=other,
                        stage_before=stage,
                        stage_after="Archived",
                        details={"side_effect": True},
                        **grant,
                    )
        elif kind == "alias":
            alias = rng.choice(("champion", "challenger"))
            before_version = model.aliases.get(alias)
            if before_version == version:
                return
            model.aliases[alias] = version
            yield entry(
                action="set_registered_model_alias",
                identity=releaser,
                decision="allow",
                model=model.name,
                version=version,
                alias=alias,
                alias_before=before_version,
                alias_after=version,
                **_granted(model.name, f"alias:{alias}", "release-manager", 2),
            )
        elif kind == "alias_delete":
            if "challenger" not in model.aliases:
                return
            holder = model.aliases.pop("challenger")
            yield entry(
                action="delete_registered_model_alias",
                identity=releaser,
                decision="allow",
                model=model.name,
                version=holder,
                alias="challenger",
                alias_before=holder,
                **_granted(model.name, "alias:challenger", "release-manager", 2),
            )
        elif kind == "describe":
            text = f"retrained on data up to week {rng.randint(1, 52)}"
            model.descriptions[version] = text
            yield entry(
                action="update_model_version",
                identity=scientist,
                decision="allow",
                model=model.name,
                version=version,
                details={"description": text},
                **_granted(model.name, "edit", "contributor", 1),
            )
        elif kind == "deny_gate":
            yield entry(
                action="transition_model_version_stage",
                identity=scientist,
                decision="deny",
                model=model.name,
                version=version,
                details={"archive_existing_versions": True, "stage": "Production"},
                reason=f"{scientist.user} (groups: data-science) has no binding granting "
                f"'transition:Production' on model '{model.name}'",
                rule="default-deny",
            )
        elif kind == "deny_alias":
            yield entry(
                action="set_registered_model_alias",
                identity=scientist,
                decision="deny",
                model=model.name,
                version=version,
                alias="champion",
                reason=f"moving alias 'champion' of model '{model.name}' needs gate "
                "'production': 2 approvals from approver, none given",
                rule="gates.production",
            )
        else:  # deny_register
            yield entry(
                action="create_model_version",
                identity=people["reader"],
                decision="deny",
                model=model.name,
                details={"source": "models:/m-untrusted"},
                reason=f"reader has no binding granting 'register' on model '{model.name}'",
                rule="default-deny",
            )

    @staticmethod
    def _set_stage(model: _Model, version: int, stage: str) -> None:
        model.stages[version] = stage
        model.updated_ms = _now_ms()

    # ------------------------------------------------------------------ MLflow's tables

    def registry_rows(self) -> dict[str, Iterator[dict[str, Any]]]:
        """The rows of MLflow's registry tables, in the state the history left them.

        Returns:
            Row iterators by table name, parents first.
        """
        return {
            "registered_models": (
                {"name": m.name, "creation_time": m.created_ms, "last_updated_time": m.updated_ms}
                for m in self.state
            ),
            "model_versions": self._version_rows(),
            "registered_model_aliases": (
                {"name": m.name, "alias": alias, "version": version}
                for m in self.state
                for alias, version in sorted(m.aliases.items())
            ),
            "model_version_tags": (
                {"name": m.name, "version": v, "key": "validation_status", "value": status}
                for m in self.state
                for v, status in sorted(m.tags.items())
            ),
        }

    def _version_rows(self) -> Iterator[dict[str, Any]]:
        for m in self.state:
            for number in range(1, m.versions + 1):
                created = m.version_times[number - 1]
                yield {
                    "name": m.name,
                    "version": number,
                    "creation_time": created,
                    "last_updated_time": max(created, m.updated_ms),
                    "description": m.descriptions.get(number),
                    "user_id": m.version_users[number - 1],
                    "current_stage": m.stages.get(number, "None"),
                    "source": f"models:/m-{number:08x}",
                    "status": "READY",
                }


def _granted(model: str, permission: str, role: str, binding: int) -> dict[str, str]:
    return {
        "reason": f"holds role {role} on model '{model}', which grants '{permission}'",
        "rule": f"bindings[{binding}] (role {role})",
    }


def _now_ms() -> int:
    return int(time.time() * 1000)


def bulk_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows with PostgreSQL's COPY (psycopg 3), else with a multi-row INSERT.

    Columns a row leaves out take their server defaults (MLflow's ``workspace``).
    """
    if not rows:
        return
    columns = [c.name for c in table.c if c.name in rows[0]]
    raw = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        names = ", ".join(f'"{name}"' for name in columns)
        with (
            raw.cursor() as cursor,
            cursor.copy(  # type: ignore[union-attr]
                f'COPY "{table.name}" ({names}) FROM STDIN'
            ) as copy,
        ):
            for row in rows:
                copy.write_row([row[name] for name in columns])
        return
    conn.execute(sa.insert(table), rows)


def load_registry(engine: sa.Engine, plan: Plan, batch: int = 20000) -> dict[str, int]:
    """Insert MLflow's registry rows for ``plan`` in bulk.

    Returns:
        Row counts by table.
    """
    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlModelVersionTag,
        SqlRegisteredModel,
        SqlRegisteredModelAlias,
    )

    tables = {
        "registered_models": SqlRegisteredModel.__table__,
        "model_versions": SqlModelVersion.__table__,
        "registered_model_aliases": SqlRegisteredModelAlias.__table__,
        "model_version_tags": SqlModelVersionTag.__table__,
    }
    counts: dict[str, int] = {}
    for name, rows in plan.registry_rows().items():
        counts[name] = 0
        while chunk := list(itertools.islice(rows, batch)):
            with engine.begin() as conn:
                bulk_insert(conn, tables[name], chunk)
            counts[name] += len(chunk)
    return counts


def load_audit(
    engine: sa.Engine,
    plan: Plan,
    *,
    batch: int = 20000,
    at_rows: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Chain the plan's audit rows with the plugin's own code and insert them in bulk.

    Each batch is chained by ``_chain`` (``mlflow_governance.audit.writer``), the function
    the governed write path numbers, stamps and hashes its rows with, after the chain
    head it holds locked; the rows then go in with COPY and the head moves to the last
    one, as an append of that many rows would leave it. The outbox rows a governed write
    also adds are left out: nothing measured here reads them.

    Args:
        engine: The registry database.
        plan: The history to write.
        batch: Rows per transaction.
        at_rows: Call ``on_rows`` once the log holds exactly this many rows.
        on_rows: E.g. a verification of the log so far.

    Returns:
        The number of rows written.
    """
    from mlflow_governance.audit.storable import storage_of
    from mlflow_governance.audit.tables import HEAD_ROW_ID, audit_head, audit_log
    from mlflow_governance.audit.writer import AuditEntry, _chain
    from mlflow_governance.identity import Identity

    def identity(user: str) -> Identity:
        octet = sum(map(ord, user)) % 250 + 2
        return Identity(user, "server", client_address=f"10.20.0.{octet}", user_agent=_AGENT)

    head = audit_head.c
    written = 0
    entries = plan.entries(identity, AuditEntry)
    while True:
        size = batch
        if at_rows is not None and written < at_rows:
            size = min(batch, at_rows - written)
        chunk = list(itertools.islice(entries, size))
        if not chunk:
            return written
        with engine.begin() as conn:
            seq, prev_hash = conn.execute(
                sa.select(head.seq, head.hash).where(head.id == HEAD_ROW_ID).with_for_update()
            ).one()
            rows = _chain(chunk, storage_of(conn), int(seq) + 1, prev_hash)
            bulk_insert(conn, audit_log, rows)
            conn.execute(
                sa.update(audit_head)
                .where(head.id == HEAD_ROW_ID)
                .values(seq=int(seq) + len(rows), hash=rows[-1]["hash"])
            )
        written += len(chunk)
        if on_rows is not None and written == at_rows:
            on_rows(written)
