"""The policy as immutable data, plus the facts and answers the evaluator exchanges.

Every class is a frozen dataclass so a loaded policy can be shared between threads and
requests without copying. The lookups the evaluator needs on every decision (which
bindings a principal appears in, what each role grants, compiled globs) are built once in
``__post_init__`` and kept in fields excluded from equality, so two policies loaded from
equivalent files compare equal.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, NamedTuple, TypeVar

from mlflow_governance.policy._index import PolicyIndex, TagWriters
from mlflow_governance.policy.permissions import GlobSet, Permission, parse_permission

K = TypeVar("K")
V = TypeVar("V")

MODES: tuple[str, ...] = ("enforce", "audit-only")
APPLY_MODES: tuple[str, ...] = ("automatic", "manual")
DISTINCT_FROM: tuple[str, ...] = ("requester", "version_creator")
METRIC_OPERATORS: tuple[str, ...] = (">=", ">", "<=", "<", "==", "!=")
NOTIFICATION_TYPES: tuple[str, ...] = ("webhook", "sqs", "sns", "eventbridge", "slack")
#: MLflow's name for the workspace of a server without workspaces (and of a subject whose
#: workspace is not given).
DEFAULT_WORKSPACE = "default"
#: The event types of SPEC section 8, which notification ``events`` globs must match.
EVENT_TYPES: tuple[str, ...] = (
    "model_version.registered",
    "model_version.transitioned",
    "alias.set",
    "alias.deleted",
    "promotion.requested",
    "promotion.approved",
    "promotion.rejected",
    "promotion.applied",
    "policy.applied",
    "access.denied",
)


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """A read-only, hashable, insertion-ordered mapping.

    ``types.MappingProxyType`` is read-only but not hashable, which would make every
    frozen dataclass holding one unhashable; this small class is both.
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = dict(data or {})
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    # The Mapping mixins go through __getitem__ one key at a time; the evaluator walks
    # these maps on every decision, so delegate straight to the dict.
    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: K, default: Any = None) -> Any:
        return self._data.get(key, default)

    def keys(self) -> KeysView[K]:
        return self._data.keys()

    def values(self) -> ValuesView[V]:
        return self._data.values()

    def items(self) -> ItemsView[K, V]:
        return self._data.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self._data == other._data
        return self._data == other if isinstance(other, Mapping) else NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def format_number(value: float) -> str:
    """Print a metric value or threshold: ``200`` rather than ``200.0``, else Python's repr."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class MetricCondition(NamedTuple):
    """A threshold a logged metric must meet, e.g. ``(">=", 0.95)``."""

    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        """Whether ``value`` satisfies the condition."""
        op, limit = self.op, self.threshold
        if op == ">=":
            return value >= limit
        if op == ">":
            return value > limit
        if op == "<=":
            return value <= limit
        if op == "<":
            return value < limit
        if op == "==":
            return value == limit
        return value != limit

    def __str__(self) -> str:
        return f"{self.op} {format_number(self.threshold)}"


@dataclass(frozen=True)
class RoleGrant:
    """What a role grants, compiled for constant-time checks.

    Attributes:
        everything: The role lists ``*``.
        exact: Canonical simple, ``transition:<Stage>`` and ``approve:<gate>`` permissions.
        all_transitions: The role lists ``transition:*``.
        aliases: The globs of the role's ``alias:<glob>`` permissions.
    """

    everything: bool
    exact: frozenset[str]
    all_transitions: bool
    aliases: GlobSet

    @classmethod
    def of(cls, permissions: tuple[str, ...]) -> RoleGrant:
        """Compile a role's permissions (unknown strings are ignored; the loader rejects them)."""
        parsed = [p for p in map(parse_permission, permissions) if p is not None]
        return cls(
            everything=any(p.kind == "*" for p in parsed),
            exact=frozenset(p.text for p in parsed if p.kind != "alias"),
            all_transitions=any(p.text == "transition:*" for p in parsed),
            aliases=GlobSet.of(tuple(p.arg for p in parsed if p.kind == "alias")),
        )

    def grants(self, permission: Permission) -> bool:
        """Whether the role grants ``permission`` (an alias is matched against the globs)."""
        if self.everything or permission.text in self.exact:
            return True
        if permission.kind == "transition":
            return self.all_transitions
        if permission.kind == "alias":
            return self.aliases.match(permission.arg)
        return False


@dataclass(frozen=True)
class Role:
    """A named set of permissions.

    Attributes:
        name: The role name used in bindings and gates.
        permissions: The canonical permission strings, in file order.
    """

    name: str
    permissions: tuple[str, ...] = ()
    grant: RoleGrant = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "grant", RoleGrant.of(self.permissions))


@dataclass(frozen=True)
class Binding:
    """Grants a role to principals on the models matching some globs, in some workspaces.

    Attributes:
        role: The role name.
        principals: ``user:NAME``, ``group:NAME`` or ``user:*`` (everyone).
        models: fnmatch-style globs on registered model names.
        workspaces: fnmatch-style globs on MLflow workspace names; the binding applies only
            to subjects acting in a matching workspace (``default`` when the server has no
            workspaces).
    """

    role: str
    principals: tuple[str, ...]
    models: tuple[str, ...] = ("*",)
    workspaces: tuple[str, ...] = ("*",)
    model_globs: GlobSet = field(init=False, repr=False, compare=False)
    workspace_globs: GlobSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_globs", GlobSet.of(self.models))
        object.__setattr__(self, "workspace_globs", GlobSet.of(self.workspaces))


@dataclass(frozen=True)
class Targets:
    """The stages and aliases a gate holds back.

    Attributes:
        stages: Canonical stage names.
        aliases: Alias names or globs.
    """

    stages: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Approvals:
    """How many people must approve, and who they may be.

    Attributes:
        required: Number of valid approvals needed (0: checks only).
        approver_roles: Roles whose holders may approve; empty means any role granting
            ``approve:<gate>`` (or ``*``).
        distinct_from: ``requester`` and/or ``version_creator``: who may not approve.
        expire_after: Approvals older than this no longer count; ``None``: never expire.
    """

    required: int = 0
    approver_roles: tuple[str, ...] = ()
    distinct_from: tuple[str, ...] = ()
    expire_after: timedelta | None = None


@dataclass(frozen=True)
class MetricProvenance:
    """Where a checked metric must come from, beyond its value.

    Attributes:
        logged_before_request: The metric must have been logged strictly before the move
            was asked for, so a better number logged afterwards does not count.
        not_by_requester: The metric must have been logged by someone other than the
            person asking for the move (and by someone known).
    """

    logged_before_request: bool = False
    not_by_requester: bool = False


@dataclass(frozen=True)
class Checks:
    """What the version itself must show before the move.

    Attributes:
        metrics: Metric name to the condition it must meet.
        tags: Tag name to the exact value it must have.
        signature_required: The version's model must carry a signature.
        metric_provenance: For metrics with provenance requirements only: where the value
            must come from.
        tag_set_by: For tags with trusted writers only: the roles allowed to set, change
            or delete the tag on the models this gate covers.
    """

    metrics: FrozenMap[str, MetricCondition] = field(default_factory=FrozenMap)
    tags: FrozenMap[str, str] = field(default_factory=FrozenMap)
    signature_required: bool = False
    metric_provenance: FrozenMap[str, MetricProvenance] = field(default_factory=FrozenMap)
    tag_set_by: FrozenMap[str, tuple[str, ...]] = field(default_factory=FrozenMap)


@dataclass(frozen=True)
class Gate:
    """A checkpoint in front of some stages or aliases.

    Attributes:
        name: The gate name (used in ``approve:<gate>`` and ``check --gate``).
        targets: The stages and aliases it holds back.
        from_stages: Stages the version must stand in now; empty means any.
        approvals: Approval requirements.
        checks: Metric, tag and signature requirements.
        apply: ``automatic`` (applied at the last approval) or ``manual``.
        rollback_approvals: Approvals needed to restore a previous holder; ``None`` means
            the same as ``approvals.required``.
        break_glass_roles: Roles that may apply at once (a review stays open).
        archive_existing: Archive the versions already in the target stage.
        models: Globs on model names the gate applies to.
    """

    name: str
    targets: Targets
    from_stages: tuple[str, ...] = ()
    approvals: Approvals = field(default_factory=Approvals)
    checks: Checks = field(default_factory=Checks)
    apply: str = "automatic"
    rollback_approvals: int | None = None
    break_glass_roles: tuple[str, ...] = ()
    archive_existing: bool = False
    models: tuple[str, ...] = ("*",)
    model_globs: GlobSet = field(init=False, repr=False, compare=False)
    alias_globs: GlobSet = field(init=False, repr=False, compare=False)
    stage_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_globs", GlobSet.of(self.models))
        object.__setattr__(self, "alias_globs", GlobSet.of(self.targets.aliases))
        object.__setattr__(self, "stage_keys", frozenset(s.lower() for s in self.targets.stages))

    def required_approvals(self, *, rollback: bool = False) -> int:
        """The approvals needed for a normal move, or for a rollback."""
        if rollback and self.rollback_approvals is not None:
            return self.rollback_approvals
        return self.approvals.required


@dataclass(frozen=True)
class Notification:
    """Where events are sent. Only the fields of its ``type`` are set.

    Attributes:
        type: ``webhook``, ``sqs``, ``sns``, ``eventbridge`` or ``slack``.
        events: Globs on event types (``promotion.*``); default all.
        models: Globs on registered model names; default all. Events about no model
            (``policy.applied``) go to every destination their type matches.
        url: Webhook or Slack incoming-webhook URL.
        secret_env: Environment variable holding the webhook's HMAC secret.
        allow_insecure: Permit an ``http://`` URL and a loopback or private address
            (e.g. a local receiver).
        queue_url: SQS queue URL.
        topic_arn: SNS topic ARN.
        bus: EventBridge bus name.
        source: EventBridge ``Source`` field.
        region: AWS region (default: the SDK's).
    """

    type: str
    events: tuple[str, ...] = ("*",)
    models: tuple[str, ...] = ("*",)
    url: str | None = None
    secret_env: str | None = None
    allow_insecure: bool = False
    queue_url: str | None = None
    topic_arn: str | None = None
    bus: str | None = None
    source: str | None = None
    region: str | None = None
    event_globs: GlobSet = field(init=False, repr=False, compare=False)
    model_globs: GlobSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_globs", GlobSet.of(self.events))
        object.__setattr__(self, "model_globs", GlobSet.of(self.models))

    def wants(self, event_type: str, model: str | None = None) -> bool:
        """Whether this destination subscribes to an event of ``event_type`` about ``model``.

        Args:
            event_type: The event type, e.g. ``promotion.applied``.
            model: The registered model the event is about; ``None`` for an event about
                no model, which only the type decides.
        """
        if not self.event_globs.match(event_type):
            return False
        return model is None or self.model_globs.match(model)


@dataclass(frozen=True)
class Policy:
    """A whole policy file.

    Attributes:
        version: The file format version (always 1).
        mode: ``enforce`` or ``audit-only``.
        groups: Group name to its member user names.
        roles: Role name to role, in file order.
        bindings: Role grants, in file order (``bindings[i]`` in decisions).
        gates: Gate name to gate, in file order.
        protect_delete: Stages and aliases whose versions cannot be deleted.
        notifications: Event destinations.
        source: Where the policy came from (a path, ``<string>`` or ``<default>``).
    """

    version: int = 1
    mode: str = "enforce"
    groups: FrozenMap[str, tuple[str, ...]] = field(default_factory=FrozenMap)
    roles: FrozenMap[str, Role] = field(default_factory=FrozenMap)
    bindings: tuple[Binding, ...] = ()
    gates: FrozenMap[str, Gate] = field(default_factory=FrozenMap)
    protect_delete: tuple[str, ...] = ()
    notifications: tuple[Notification, ...] = ()
    source: str = field(default="<string>", compare=False)
    index: PolicyIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", PolicyIndex.of(self))

    @property
    def enforcing(self) -> bool:
        """Whether refusals are enforced (``mode: enforce``)."""
        return self.mode == "enforce"


def default_policy() -> Policy:
    """The policy used when none is configured: audit-only, nothing granted, no gates.

    Every action proceeds and is recorded with ``would-deny``, so installing the plugin
    never breaks an existing registry before anyone writes a policy.
    """
    return Policy(version=1, mode="audit-only", source="<default>")


__all__ = [
    "APPLY_MODES",
    "DEFAULT_WORKSPACE",
    "DISTINCT_FROM",
    "EVENT_TYPES",
    "METRIC_OPERATORS",
    "MODES",
    "NOTIFICATION_TYPES",
    "Approvals",
    "Binding",
    "Checks",
    "FrozenMap",
    "Gate",
    "MetricCondition",
    "MetricProvenance",
    "Notification",
    "Policy",
    "PolicyIndex",
    "Role",
    "RoleGrant",
    "TagWriters",
    "Targets",
    "default_policy",
]
