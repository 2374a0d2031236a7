"""What a move is and where it stands against its gates.

A :class:`Move` describes one stage transition or alias move about to be made; a
:class:`GateStatus` says how a version fares against one gate (checks and approvals),
and :func:`explain_all` turns several into the sentence a refusal or a request shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlflow_governance.policy import (
    CheckResult,
    Gate,
    GateReport,
    Policy,
    describe_approvals,
)
from mlflow_governance.workflow import request_rows as rq


@dataclass
class Move:
    """A stage transition or alias move about to be made.

    Attributes:
        model: The registered model.
        version: The version moved (None when an alias is deleted).
        target: The stage or alias.
        removing: True for an alias deletion.
        archive_existing: Whether other versions in the target stage get archived; the
            gate may turn it on (``archive_existing: true``).
        via_request: The approved request this move applies, when the workflow applies it.
        rollback: Whether the move restores a previous holder (rollback approvals count).
    """

    model: str
    version: int | None
    target: rq.Target
    removing: bool = False
    archive_existing: bool = False
    via_request: int | None = None
    rollback: bool = False
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def permission(self) -> str:
        """The permission the target needs."""
        prefix = "alias" if self.target.kind == rq.ALIAS else "transition"
        return f"{prefix}:{self.target.name}"


@dataclass(frozen=True)
class Verdict:
    """Why a write is refused, as the gate (or a side-effect rule) decides it.

    The deciding code returns it and acts on nothing: the store writes the deny row,
    opens the request when asked to, and raises the refusal.

    Attributes:
        rule: The policy rule that refuses.
        reason: Why, for people.
        hint: What would allow it.
        action: What was asked, as the refusal names it (e.g. ``transition:Production``).
        request_id: An existing request the refusal concerns.
        open_request: Whether the refused move should open (or reuse) a pending request
            for the actor, who may ask for it.
    """

    rule: str | None
    reason: str
    hint: str | None = None
    action: str | None = None
    request_id: int | None = None
    open_request: bool = False


@dataclass(frozen=True)
class GateStatus:
    """Where a version stands against a gate: checks and approvals."""

    gate: Gate
    checks: tuple[CheckResult, ...]
    approvals: GateReport | None

    @property
    def failed_checks(self) -> tuple[CheckResult, ...]:
        """The checks that do not pass."""
        return tuple(c for c in self.checks if not c.passed)

    def explain(self, policy: Policy, approvers_elsewhere: frozenset[str] = frozenset()) -> str:
        """A sentence listing what is missing, e.g. for a refusal.

        Args:
            policy: The policy in force.
            approvers_elsewhere: Voters who count for another gate of the same move; that
                they are no approvers of this one goes without saying.
        """
        parts = []
        if self.approvals is not None and not self.approvals.satisfied:
            parts.append(describe_approvals(policy, self.gate, self.approvals))
            # Say why approvals given do not count (expired, the requester's own, ...):
            # otherwise "1 so far" after two approvals reads like a lost vote.
            parts.extend(
                f"{who}'s approval does not count ({why})"
                for who, why in self.approvals.discarded
                if not (who in approvers_elsewhere and why.startswith("not an approver"))
            )
        parts.extend(
            f"check {c.name} fails (expected {c.expected}, got {c.actual})"
            for c in self.failed_checks
        )
        return "; ".join(parts) if parts else "nothing missing"

    @property
    def passed(self) -> bool:
        """The checks pass and, where approvals are counted, they satisfy the gate."""
        return not self.failed_checks and (self.approvals is None or self.approvals.satisfied)


def explain_all(policy: Policy, statuses: Sequence[GateStatus]) -> str:
    """What the gates in front of a move still need (one gate: its explanation alone)."""
    if len(statuses) == 1:
        return statuses[0].explain(policy)
    counted = frozenset(
        who for st in statuses if st.approvals is not None for who in st.approvals.approvers
    )
    parts = [
        f"gate {st.gate.name}: {st.explain(policy, counted)}" for st in statuses if not st.passed
    ]
    return "; ".join(parts) if parts else "nothing missing"


def _held_by(policy: Policy, statuses: Sequence[GateStatus]) -> tuple[str, str]:
    """The rule and the reason of a refusal by gates: the first gate not passed is named."""
    first = next((st for st in statuses if not st.passed), statuses[0])
    if len(statuses) == 1:
        return f"gates.{first.gate.name}", f"gate {first.gate.name}: {first.explain(policy)}"
    return f"gates.{first.gate.name}", explain_all(policy, statuses)


Hook = Callable[[Any], None]


def _fact(vote: rq.ApprovalView) -> Any:
    from datetime import datetime

    from mlflow_governance.policy import ApprovalFact

    when = datetime.fromisoformat(vote.time.rstrip("Z"))
    return ApprovalFact(vote.approver, frozenset(vote.groups), when)
