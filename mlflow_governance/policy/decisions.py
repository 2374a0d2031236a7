"""What callers hand to the evaluator and what it answers: subjects, facts and decisions.

Kept apart from :mod:`mlflow_governance.policy.model` because these describe one moment
(who is acting, what a version shows now), while the model describes the policy itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

from mlflow_governance.policy.model import FrozenMap


@dataclass(frozen=True)
class Subject:
    """Who is acting.

    Attributes:
        user: The user name.
        groups: Groups known from outside the policy (e.g. a trusted header); the policy's
            own ``groups:`` are added on top.
        workspace: The MLflow workspace the subject acts in; bindings with ``workspaces``
            apply only there. ``None`` means MLflow's default workspace, ``default``.
    """

    user: str
    groups: frozenset[str] = frozenset()
    workspace: str | None = None

    def __post_init__(self) -> None:
        # Callers often have a list or set at hand; keep the dataclass hashable anyway.
        if not isinstance(self.groups, frozenset):
            object.__setattr__(self, "groups", frozenset(self.groups))


@dataclass(frozen=True)
class Decision:
    """The answer to "may this subject do this?".

    Attributes:
        allowed: Whether the action may proceed: true when granted, and also for
            ``would-deny`` in audit-only mode (the action proceeds and is recorded).
        effect: ``allow``, ``deny`` (enforced refusal) or ``would-deny`` (audit-only).
        rule: What decided, e.g. ``bindings[2] (role promoter)`` or ``default-deny``.
        reason: A sentence saying why.
        hint: What would allow it, for refusals.
    """

    allowed: bool
    effect: str
    rule: str
    reason: str
    hint: str | None = None

    @property
    def refused(self) -> bool:
        """Whether the action must be stopped (``effect == "deny"``)."""
        return self.effect == "deny"

    @property
    def granted(self) -> bool:
        """Whether the policy grants the action (``effect == "allow"``)."""
        return self.effect == "allow"


@dataclass(frozen=True)
class MetricOrigin:
    """When and by whom a metric's checked value was logged.

    Attributes:
        logged_at: When it was logged (naive datetimes are taken as UTC); ``None`` when
            unknown. MLflow takes this time from the client that logs the metric.
        logged_by: Who logged it; ``None`` when unknown. MLflow records no author per
            metric: callers give the ``user_id`` of the run that logged it.
    """

    logged_at: datetime | None = None
    logged_by: str | None = None


@dataclass(frozen=True)
class VersionFacts:
    """What the registry knows about a model version, for gate checks.

    Attributes:
        metrics: Metric name to value (the logged model's, else its run's).
        tags: Version tags.
        has_signature: Whether the version's model has a signature.
        current_stage: The version's stage now.
        metric_origins: Metric name to when and by whom its value in ``metrics`` was
            logged; a metric absent here has an unknown origin.
    """

    metrics: Mapping[str, float] = field(default_factory=FrozenMap)
    tags: Mapping[str, str] = field(default_factory=FrozenMap)
    has_signature: bool = False
    current_stage: str = "None"
    metric_origins: Mapping[str, MetricOrigin] = field(default_factory=FrozenMap)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one gate check.

    Attributes:
        name: E.g. ``metric accuracy``, ``tag validation_status``, ``signature``,
            ``from_stages``.
        passed: Whether it holds.
        expected: What the gate requires, e.g. ``>= 0.95``.
        actual: What the version has, or ``missing``.
    """

    name: str
    passed: bool
    expected: str
    actual: str


@dataclass(frozen=True)
class ApprovalFact:
    """One recorded approval.

    Attributes:
        approver: The approving user.
        groups: The approver's groups from outside the policy at approval time.
        time: When it was given (naive datetimes are taken as UTC).
    """

    approver: str
    groups: frozenset[str]
    time: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.groups, frozenset):
            object.__setattr__(self, "groups", frozenset(self.groups))


@dataclass(frozen=True)
class GateReport:
    """Where a gate's approvals stand.

    Attributes:
        required: Approvals needed.
        valid: Approvals that count.
        approvers: Who the counted approvals are from, oldest first.
        discarded: ``(approver, why)`` for each approval that does not count.
        satisfied: ``valid >= required``.
    """

    required: int
    valid: int
    approvers: tuple[str, ...]
    discarded: tuple[tuple[str, str], ...]
    satisfied: bool

    @property
    def missing(self) -> int:
        """How many more approvals are needed."""
        return max(0, self.required - self.valid)


class Grant(NamedTuple):
    """One line of ``policy explain``: a permission and the rule granting it."""

    permission: str
    rule: str


def aware(moment: datetime) -> datetime:
    """``moment`` as an aware datetime, a naive one being taken as UTC.

    Databases often hand back naive UTC datetimes; comparing them with aware ones raises.
    """
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
