"""Readers for the ``gates:`` and ``notifications:`` sections of a policy file.

They check each entry on its own; references to roles and gates defined elsewhere in the
file are checked afterwards by :mod:`mlflow_governance.policy.loader`, once every section
has been read.
"""

from __future__ import annotations

import re

from mlflow_governance.policy._reader import Reader, describe
from mlflow_governance.policy._values import (
    METRIC_FORM,
    duration_problem,
    parse_duration,
    parse_metric,
)
from mlflow_governance.policy._yaml import Path
from mlflow_governance.policy.model import (
    APPLY_MODES,
    DISTINCT_FROM,
    EVENT_TYPES,
    NOTIFICATION_TYPES,
    Approvals,
    Checks,
    FrozenMap,
    Gate,
    MetricCondition,
    MetricProvenance,
    Notification,
    Targets,
)
from mlflow_governance.policy.permissions import (
    STAGES,
    GlobSet,
    alias_name_problem,
    canonical_stage,
    glob_problem,
    has_magic,
    is_gate_name,
)

GATE_KEYS: tuple[str, ...] = (
    "targets",
    "from_stages",
    "approvals",
    "checks",
    "apply",
    "rollback_approvals",
    "break_glass_roles",
    "archive_existing",
    "models",
)
TARGET_KEYS: tuple[str, ...] = ("stages", "aliases")
APPROVAL_KEYS: tuple[str, ...] = ("required", "approver_roles", "distinct_from", "expire_after")
CHECK_KEYS: tuple[str, ...] = ("metrics", "tags", "signature_required")
METRIC_ENTRY_KEYS: tuple[str, ...] = ("condition", "logged_before_request", "not_by_requester")
TAG_ENTRY_KEYS: tuple[str, ...] = ("value", "set_by")
# Marks a value the file does not give, already reported as a missing required key.
_MISSING = object()

# Required keys first, then optional ones, per notification type.
NOTIFICATION_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "webhook": (("url",), ("secret_env", "events", "models", "allow_insecure")),
    "sqs": (("queue_url",), ("region", "events", "models")),
    "sns": (("topic_arn",), ("region", "events", "models")),
    "eventbridge": ((), ("bus", "source", "region", "events", "models")),
    "slack": (("url",), ("events", "models", "allow_insecure")),
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def read_stages(reader: Reader, path: Path, value: object) -> tuple[str, ...]:
    """A list of stage names, matched case-insensitively and returned in MLflow's spelling."""
    if not isinstance(value, list):
        reader.add(path, f"expected a list of stage names, got {describe(value)}", STAGES)
        return ()
    stages = []
    for i, item in enumerate(value):
        name = reader.string((*path, i), item)
        stage = canonical_stage(name) if name is not None else None
        if name is not None and stage is None:
            reader.add((*path, i), f"unknown stage '{name}'", STAGES)
        elif stage is not None:
            stages.append(stage)
    return tuple(stages)


def read_gate(reader: Reader, name: str, value: object) -> Gate | None:
    """Read one entry of ``gates:``; ``None`` if it is too broken to build."""
    path: Path = ("gates", name)
    if not is_gate_name(name):
        reader.add(
            path,
            f"'{name}' is not a valid gate name (letters, digits, '_', '.', '-'; "
            "it appears in 'approve:<gate>' and on the command line)",
            at_key=True,
        )
    data = reader.mapping(path, value, GATE_KEYS, what="gate settings")
    if data is None:
        return None
    targets = Targets()
    if reader.required(path, data, "targets", "targets: {stages: [Production]}"):
        targets = _read_targets(reader, (*path, "targets"), data["targets"])
    from_stages = read_stages(reader, (*path, "from_stages"), data.get("from_stages", []))
    approvals = Approvals()
    if "approvals" in data:
        approvals = _read_approvals(reader, (*path, "approvals"), data["approvals"])
    checks = _read_checks(reader, (*path, "checks"), data.get("checks", {}))
    apply = reader.choice(
        (*path, "apply"), data.get("apply", "automatic"), APPLY_MODES, what="apply mode"
    )
    rollback = data.get("rollback_approvals")
    if rollback is not None:
        rollback = reader.integer((*path, "rollback_approvals"), rollback)
    break_glass = reader.string_list(
        (*path, "break_glass_roles"), data.get("break_glass_roles", []), what="role names"
    )
    archive = reader.boolean((*path, "archive_existing"), data.get("archive_existing", False))
    models = reader.globs((*path, "models"), data.get("models", ["*"]), what="model name globs")
    if isinstance(data.get("models"), list) and not data["models"]:
        reader.add((*path, "models"), "an empty list makes the gate apply to no model")
    return Gate(
        name=name,
        targets=targets,
        from_stages=from_stages,
        approvals=approvals,
        checks=checks,
        apply=apply or "automatic",
        rollback_approvals=rollback if isinstance(rollback, int) else None,
        break_glass_roles=break_glass or (),
        archive_existing=bool(archive),
        models=models or ("*",),
    )


def _read_targets(reader: Reader, path: Path, value: object) -> Targets:
    data = reader.mapping(path, value, TARGET_KEYS, what="stages and aliases")
    if data is None:
        return Targets()
    stages = read_stages(reader, (*path, "stages"), data.get("stages", []))
    aliases = []
    raw_aliases = data.get("aliases", [])
    for i, alias in reader.string_items((*path, "aliases"), raw_aliases, what="aliases") or ():
        problem = glob_problem(alias) if has_magic(alias) else alias_name_problem(alias)
        if problem:
            reader.add((*path, "aliases", i), problem)
        else:
            aliases.append(alias)
    if not data.get("stages") and not data.get("aliases"):
        reader.add(path, "a gate needs at least one target stage or alias", TARGET_KEYS)
    return Targets(stages=stages, aliases=tuple(aliases))


def _read_approvals(reader: Reader, path: Path, value: object) -> Approvals:
    data = reader.mapping(path, value, APPROVAL_KEYS, what="approval settings")
    if data is None:
        return Approvals()
    required = 0
    if reader.required(path, data, "required", "required: 2"):
        required = reader.integer((*path, "required"), data["required"]) or 0
    roles = reader.string_list(
        (*path, "approver_roles"), data.get("approver_roles", []), what="role names"
    )
    distinct: list[str] = []
    raw_distinct = data.get("distinct_from", [])
    for i, item in enumerate(raw_distinct if isinstance(raw_distinct, list) else []):
        choice = reader.choice((*path, "distinct_from", i), item, DISTINCT_FROM, what="party")
        if choice and choice not in distinct:
            distinct.append(choice)
    if not isinstance(raw_distinct, list):
        reader.add((*path, "distinct_from"), "expected a list", DISTINCT_FROM)
    expire_after = None
    raw_expiry = data.get("expire_after")
    if raw_expiry is not None:
        expire_after = parse_duration(raw_expiry) if isinstance(raw_expiry, str) else None
        if expire_after is None:
            reader.add((*path, "expire_after"), duration_problem(raw_expiry, describe(raw_expiry)))
        elif not expire_after:
            reader.add((*path, "expire_after"), "must be longer than zero; omit it for no expiry")
    return Approvals(
        required=required,
        approver_roles=roles or (),
        # Canonical order keeps policies loaded from equivalent files equal.
        distinct_from=tuple(choice for choice in DISTINCT_FROM if choice in distinct),
        expire_after=expire_after,
    )


def _read_checks(reader: Reader, path: Path, value: object) -> Checks:
    data = reader.mapping(path, value, CHECK_KEYS, what="checks")
    if data is None:
        return Checks()
    metrics: dict[str, MetricCondition] = {}
    provenance: dict[str, MetricProvenance] = {}
    raw_metrics = reader.mapping((*path, "metrics"), data.get("metrics", {}), what="metric names")
    for name, entry in (raw_metrics or {}).items():
        entry_path: Path = (*path, "metrics", name)
        expression: object = entry
        wanted = MetricProvenance()
        if isinstance(entry, dict):
            expression, wanted = _read_metric_entry(reader, entry_path, entry)
            entry_path = (*entry_path, "condition")
        condition = parse_metric(expression) if isinstance(expression, str) else None
        if condition is None:
            if expression is not _MISSING:
                reader.add(
                    entry_path,
                    f"{describe(expression)} is not a metric condition; write {METRIC_FORM}",
                )
        else:
            metrics[name] = condition
            if wanted.logged_before_request or wanted.not_by_requester:
                provenance[name] = wanted
    tags: dict[str, str] = {}
    set_by: dict[str, tuple[str, ...]] = {}
    raw_tags = reader.mapping((*path, "tags"), data.get("tags", {}), what="tag names")
    for name, entry in (raw_tags or {}).items():
        entry_path = (*path, "tags", name)
        expected: object = entry
        if isinstance(entry, dict):
            expected, writers = _read_tag_entry(reader, entry_path, entry)
            entry_path = (*entry_path, "value")
            if writers:
                set_by[name] = writers
        if isinstance(expected, str):
            tags[name] = expected
        elif expected is not _MISSING:
            # Tags are text in MLflow; `true` or `1` would never equal the stored value.
            reader.add(
                entry_path,
                f"expected the tag's value as text, got {describe(expected)}; quote it",
            )
    signature = reader.boolean((*path, "signature_required"), data.get("signature_required", False))
    return Checks(
        metrics=FrozenMap(metrics),
        tags=FrozenMap(tags),
        signature_required=bool(signature),
        metric_provenance=FrozenMap(provenance),
        tag_set_by=FrozenMap({name: roles for name, roles in set_by.items() if name in tags}),
    )


def _read_metric_entry(
    reader: Reader, path: Path, entry: dict[str, object]
) -> tuple[object, MetricProvenance]:
    """``{condition: ">= 0.95", logged_before_request: true, not_by_requester: true}``."""
    reader.mapping(path, entry, METRIC_ENTRY_KEYS)
    condition: object = _MISSING
    if reader.required(path, entry, "condition", "condition: '>= 0.95'"):
        condition = entry["condition"]
    flags = {}
    for key in ("logged_before_request", "not_by_requester"):
        flags[key] = bool(reader.boolean((*path, key), entry.get(key, False)))
    return condition, MetricProvenance(**flags)


def _read_tag_entry(
    reader: Reader, path: Path, entry: dict[str, object]
) -> tuple[object, tuple[str, ...]]:
    """``{value: passed, set_by: [validator]}``; the roles are checked against ``roles:``
    once every section is read."""
    reader.mapping(path, entry, TAG_ENTRY_KEYS)
    expected: object = _MISSING
    if reader.required(path, entry, "value", "value: passed"):
        expected = entry["value"]
    writers: tuple[str, ...] = ()
    if "set_by" in entry:
        raw = entry["set_by"]
        writers = reader.string_list((*path, "set_by"), raw, what="role names") or ()
        if isinstance(raw, list) and not raw:
            reader.add(
                (*path, "set_by"),
                "an empty list would let nobody set the tag; name the trusted roles, or "
                "drop set_by to let anyone with 'edit' set it",
            )
    return expected, writers


def read_notification(reader: Reader, index: int, value: object) -> Notification | None:
    """Read one entry of ``notifications:``; ``None`` if it is too broken to build."""
    path: Path = ("notifications", index)
    data = reader.mapping(path, value, what="notification settings")
    if data is None:
        return None
    if not reader.required(path, data, "type", "type: webhook"):
        return None
    kind = reader.choice(
        (*path, "type"), data["type"], NOTIFICATION_TYPES, what="notification type"
    )
    if kind is None:
        return None
    required, optional = NOTIFICATION_KEYS[kind]
    valid_keys = ("type", *required, *optional)
    reader.mapping(path, data, valid_keys)
    fields: dict[str, str] = {}
    for key in required:
        if reader.required(path, data, key, f"{key}: ..."):
            text = reader.string((*path, key), data[key])
            if text is not None:
                fields[key] = text
    for key in ("secret_env", "bus", "source", "region"):
        if key in optional and key in data:
            text = reader.string((*path, key), data[key])
            if text is not None:
                fields[key] = text
    allow_insecure = False
    if "allow_insecure" in optional:
        flag = reader.boolean((*path, "allow_insecure"), data.get("allow_insecure", False))
        allow_insecure = bool(flag)
    events = []
    raw_events = data.get("events", ["*"])
    for i, pattern in reader.string_items((*path, "events"), raw_events, what="event globs") or ():
        problem = glob_problem(pattern)
        if not problem and not any(GlobSet.of((pattern,)).match(e) for e in EVENT_TYPES):
            # A typo such as `promotion.aproved` would otherwise silently deliver nothing.
            problem = f"'{pattern}' matches no event type"
        if problem:
            reader.add((*path, "events", i), problem, EVENT_TYPES)
        else:
            events.append(pattern)
    models = reader.globs((*path, "models"), data.get("models", ["*"]), what="model name globs")
    if isinstance(data.get("models"), list) and not data["models"]:
        reader.add((*path, "models"), "an empty list sends this destination no event; omit it")
    _check_destination(reader, path, fields, allow_insecure=allow_insecure)
    if kind == "eventbridge":
        # Filled in so the dispatcher and `policy show` see the effective values.
        fields.setdefault("bus", "default")
        fields.setdefault("source", "mlflow.governance")
    return Notification(
        type=kind,
        events=tuple(events) or ("*",),
        models=models or ("*",),
        url=fields.get("url"),
        secret_env=fields.get("secret_env"),
        allow_insecure=allow_insecure,
        queue_url=fields.get("queue_url"),
        topic_arn=fields.get("topic_arn"),
        bus=fields.get("bus"),
        source=fields.get("source"),
        region=fields.get("region"),
    )


def _check_destination(
    reader: Reader, path: Path, fields: dict[str, str], *, allow_insecure: bool
) -> None:
    url = fields.get("url")
    if url is not None:
        if url.startswith("http://"):
            if not allow_insecure:
                reader.add(
                    (*path, "url"),
                    "an http:// webhook sends events and signatures unencrypted; use https:// "
                    "or set allow_insecure: true (e.g. for a local receiver)",
                )
        elif not url.startswith("https://"):
            reader.add((*path, "url"), f"'{url}' is not an http(s) URL", ("https://...",))
    secret_env = fields.get("secret_env")
    if secret_env is not None and not _ENV_NAME.match(secret_env):
        reader.add(
            (*path, "secret_env"),
            f"'{secret_env}' is not an environment variable name; name the variable "
            "holding the secret, not the secret itself",
        )
    queue_url = fields.get("queue_url")
    if queue_url is not None and not queue_url.startswith(("https://", "http://")):
        reader.add((*path, "queue_url"), f"'{queue_url}' is not an SQS queue URL")
    topic_arn = fields.get("topic_arn")
    if topic_arn is not None and not topic_arn.startswith("arn:"):
        reader.add((*path, "topic_arn"), f"'{topic_arn}' is not an SNS topic ARN (arn:aws:sns:...)")
