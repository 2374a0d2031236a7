"""The gate in front of every stage transition and alias move, whatever the client.

A stock ``transition_model_version_stage`` or ``set_registered_model_alias`` call, the
automatic apply at the last approval, ``promote`` and ``rollback`` all pass through
:meth:`GateKeeper.guard`. It lets a move through when the policy grants it and no gate
applies, when an approved request for exactly that move satisfies the gate now, or when
the actor holds a break-glass role (which leaves a review request open). Otherwise it
refuses, and for someone allowed to ask it opens (or reuses) the pending request and
names it in the refusal. Stages and aliases are governed alike, so an alias is never a
way around a stage gate, and moving out of a gated stage needs the same right as moving in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlflow_governance.audit.writer import (
    DECISION_ALLOW,
    DECISION_DENY,
    DECISION_WOULD_DENY,
    AuditEntry,
)
from mlflow_governance.exceptions import Conflict, PermissionDenied
from mlflow_governance.policy import (
    Decision,
    Gate,
    Policy,
    Subject,
    authorize,
    count_approvals,
    evaluate_checks,
    gates_for,
    may_break_glass,
)
from mlflow_governance.workflow import requests as rq
from mlflow_governance.workflow.facts import version_facts
from mlflow_governance.workflow.moves import GateStatus, Move, _fact, _held_by
from mlflow_governance.workflow.tables import (
    APPLIED,
    APPROVED,
    KIND_REVIEW,
    KIND_ROLLBACK,
    OPEN_STATES,
    PENDING,
    SUPERSEDED,
)

if TYPE_CHECKING:
    from mlflow_governance.audit.capture import Operation
    from mlflow_governance.identity import Identity
    from mlflow_governance.store import GovernedStore


class GateKeeper:
    """Decides gated moves for one governed store.

    Args:
        store: The governed store (for raw reads, the engine and the tracking URI).
    """

    def __init__(self, store: GovernedStore) -> None:
        self.store = store

    # ------------------------------------------------------------------ evaluation

    def status(
        self,
        policy: Policy,
        gate: Gate,
        model: str,
        version: int,
        target: rq.Target,
        request: rq.RequestView | None,
        *,
        rollback: bool = False,
    ) -> GateStatus:
        """Evaluate a gate's checks (and a request's approvals) for a version now."""
        from mlflow_governance.workflow.service import utc_now

        mv = self.store.raw_version(model, version)
        facts = version_facts(
            mv, (gate,), self.store.tracking_uri, self.store.raw_download_uri(model, version)
        )
        checks = evaluate_checks(gate, facts)
        rollback = rollback or (request is not None and request.kind == KIND_ROLLBACK)
        if rollback or (target.kind == rq.ALIAS and facts.current_stage in gate.targets.stages):
            # A version already standing in the gate's stage, or one that held the target
            # before (a rollback restores it, typically from Archived), has passed this
            # gate once: it needs no detour back through from_stages.
            checks = tuple(c for c in checks if c.name != "from_stages")
        report = None
        if request is not None:
            votes = [_fact(vote) for vote in request.approvals if vote.decision == "approve"]
            report = count_approvals(
                policy,
                gate,
                model,
                votes,
                requester=request.requester,
                creator=mv.user_id,
                now=utc_now(),
                rollback=rollback,
            )
        return GateStatus(gate, checks, report)

    def statuses(
        self,
        policy: Policy,
        gates: Sequence[Gate],
        model: str,
        version: int,
        target: rq.Target,
        request: rq.RequestView | None,
        *,
        rollback: bool = False,
    ) -> tuple[GateStatus, ...]:
        """:meth:`status` for each gate in front of a move: every one must pass."""
        return tuple(
            self.status(policy, gate, model, version, target, request, rollback=rollback)
            for gate in gates
        )

    # ------------------------------------------------------------------ the guard

    def guard(self, identity: Identity, policy: Policy, move: Move, op: Operation) -> None:
        """Decide a move; fill ``op`` with the verdict; raise when it is refused.

        Args:
            identity: The actor.
            policy: The policy in force.
            move: The move.
            op: The operation about to run; gets decision, rule, reason, request id and
                the in-transaction hooks.

        Raises:
            PermissionDenied: Refused in ``enforce`` mode (already audited; a request may
                have been opened and is named in the message).
        """
        subject = Subject(identity.user, identity.groups)
        refusal = self._target_refusal(identity, policy, subject, move, op)
        if refusal is None and op.request_id is None and not op.details.get("break_glass"):
            # A move through a satisfied gate (an approved request, break glass) was
            # sanctioned as a whole, leaving the current stage included: the production
            # gate's approvers let a version leave a gated Staging. Direct moves need the
            # right to leave a gated stage as well as the right to enter the target.
            refusal = self._exit_refusal(policy, subject, move)
        if refusal is None:
            return
        rule, reason, hint, request_id = refusal
        op.rule, op.reason, op.request_id = rule, reason, request_id
        if not policy.enforcing:
            op.decision = DECISION_WOULD_DENY
            return
        op.decision = DECISION_DENY
        self.store.audit_alone(op)
        raise PermissionDenied(
            actor=identity.user,
            action=move.permission if not move.removing else f"remove {move.target}",
            resource=_resource(move),
            reason=reason,
            rule=rule,
            hint=hint,
            request_id=request_id,
        )

    def _exit_refusal(
        self, policy: Policy, subject: Subject, move: Move
    ) -> tuple[str, str, str | None, int | None] | None:
        if move.target.kind != rq.STAGE or move.version is None:
            return None
        if not any(
            g.targets.stages and g.model_globs.match(move.model) for g in policy.gates.values()
        ):
            return None  # no stage of this model is gated: skip reading the version
        current = self.store.raw_version(move.model, move.version).current_stage
        if current == move.target.name or not gates_for(policy, move.model, stage=current):
            return None
        decision = authorize(policy, subject, f"transition:{current}", move.model)
        if decision.granted:
            return None
        return (
            decision.rule,
            f"version {move.version} stands in gated stage {current}; moving it out needs "
            f"'transition:{current}' as moving in does ({decision.reason})",
            decision.hint,
            None,
        )

    def _target_refusal(
        self, identity: Identity, policy: Policy, subject: Subject, move: Move, op: Operation
    ) -> tuple[str, str, str | None, int | None] | None:
        granted = authorize(policy, subject, move.permission, move.model)
        stage = move.target.name if move.target.kind == rq.STAGE else None
        alias = move.target.name if move.target.kind == rq.ALIAS else None
        gates = gates_for(policy, move.model, stage=stage, alias=alias)
        if move.removing or not gates:
            if granted.granted:
                op.rule, op.reason = granted.rule, granted.reason
                return None
            return granted.rule, granted.reason, granted.hint, None
        assert move.version is not None  # only removals have no version
        # Several gates may guard one target: each must be satisfied (and may break glass).
        gate = gates[0]
        op.details["gate"] = gate.name if len(gates) == 1 else [g.name for g in gates]
        if move.target.kind == rq.STAGE and any(g.archive_existing for g in gates):
            move.archive_existing = True
        request = self._approved_request(move)
        held_back: tuple[str, str, str | None, int | None] | None = None
        if request is not None:
            may_apply = (
                move.via_request is not None
                or granted.granted
                or identity.user == request.requester
            )
            statuses = self.statuses(
                policy,
                gates,
                move.model,
                move.version,
                move.target,
                request,
                rollback=move.rollback,
            )
            if may_apply and all(st.passed for st in statuses):
                self._apply_through(op, request, gate)
                return None
            if not may_apply:
                held_back = (
                    granted.rule,
                    f"request #{request.id} is approved but {granted.reason}",
                    granted.hint,
                    request.id,
                )
            else:
                rule, reason = _held_by(policy, statuses)
                held_back = (
                    rule,
                    reason,
                    f"Request #{request.id} is approved but cannot apply yet: once the gate "
                    f"passes, apply it with mlflow-governance promote {move.model} "
                    f"{move.version} --to {move.target}",
                    request.id,
                )
        # Break glass is for when the gate cannot be satisfied in time, so an approved
        # request that cannot apply (e.g. failing checks) does not stand in its way.
        glass = all(may_break_glass(policy, g, move.model, subject).granted for g in gates)
        if glass and move.via_request is None:
            self._break_glass(op, move, gate, identity)
            return None
        if held_back is not None:
            return held_back
        may_request = granted.granted or authorize(policy, subject, "request", move.model).granted
        if may_request and all(g.required_approvals(rollback=move.rollback) == 0 for g in gates):
            # Gates of checks only: whoever may move or ask for the move passes them when
            # the checks pass (as a rollback with rollback_approvals: 0 does).
            statuses = self.statuses(
                policy, gates, move.model, move.version, move.target, None, rollback=move.rollback
            )
            if all(st.passed for st in statuses):
                op.rule = f"gates.{gate.name}"
                op.reason = f"{_names(gates)}: checks pass and no approvals are required"
                return None
        return self._refuse_and_request(
            identity, policy, subject, move, gates, granted, may_request=may_request
        )

    def _approved_request(self, move: Move) -> rq.RequestView | None:
        with self.store.engine.connect() as conn:
            if move.via_request is not None:
                return rq.load(conn, move.via_request)
            found = rq.search(
                conn, model=move.model, version=move.version, target=move.target, state=APPROVED
            )
        # An approved review only acknowledges a break-glass move made already; it must
        # never authorise a later move of the same version to the same target.
        return next((view for view in found if view.kind != KIND_REVIEW), None)

    def _apply_through(self, op: Operation, request: rq.RequestView, gate: Gate) -> None:
        from mlflow_governance.workflow.service import utc_now

        op.request_id = request.id
        op.rule = f"gates.{gate.name}"
        op.reason = f"applies approved request #{request.id}"
        op.details["approvers"] = [a.approver for a in request.approvals if a.decision == "approve"]

        def mark_applied(conn: Any) -> None:
            now = utc_now()
            if not rq.transition(
                conn,
                request.id,
                from_states=[APPROVED],
                to_state=APPLIED,
                now=now,
                by=op.identity.user,
                applied=True,
            ):
                raise Conflict(
                    f"Request #{request.id} was applied or closed meanwhile; nothing was changed."
                )
            # The rows go with the move's own audit rows, in the same transaction.
            op.extra.extend(
                AuditEntry(
                    "supersede_request",
                    op.identity,
                    DECISION_ALLOW,
                    model=other.model,
                    version=other.version,
                    request_id=other.id,
                    reason=f"superseded by request #{request.id}, applied",
                    details={"superseded_by": request.id, "target": str(other.target)},
                )
                for other in _supersede_others(conn, request, now, op.identity.user)
            )

        op.hooks.append(mark_applied)

    def _break_glass(self, op: Operation, move: Move, gate: Gate, identity: Identity) -> None:
        from mlflow_governance.workflow.service import utc_now

        op.rule = f"gates.{gate.name}.break_glass_roles"
        op.reason = "break-glass move; a post-hoc review request is opened"
        op.details["break_glass"] = True
        assert move.version is not None

        version = move.version

        def open_review(conn: Any) -> None:
            review_id = rq.insert(
                conn,
                kind=KIND_REVIEW,
                model=move.model,
                version=version,
                target=move.target,
                gate=gate.name,
                state=PENDING,
                requester=identity.user,
                comment="post-hoc review of a break-glass move",
                archive_existing=False,
                now=utc_now(),
            )
            op.request_id = review_id

        op.hooks.append(open_review)

    def _refuse_and_request(
        self,
        identity: Identity,
        policy: Policy,
        subject: Subject,
        move: Move,
        gates: Sequence[Gate],
        granted: Decision,
        *,
        may_request: bool,
    ) -> tuple[str, str, str | None, int | None]:
        assert move.version is not None
        request = None
        if may_request and policy.enforcing:
            from mlflow_governance.workflow.service import Workflow

            request = Workflow(self.store).open_request(
                identity,
                move.model,
                move.version,
                move.target,
                comment="opened by a refused registry call",
                archive_existing=move.archive_existing,
                rollback=move.rollback,
            )
        statuses = self.statuses(
            policy, gates, move.model, move.version, move.target, request, rollback=move.rollback
        )
        if request is None:  # count the no approvals there are, to say what is needed
            from mlflow_governance.workflow.service import utc_now

            creator = self.store.raw_version(move.model, move.version).user_id
            statuses = tuple(
                GateStatus(
                    st.gate,
                    st.checks,
                    count_approvals(
                        policy,
                        st.gate,
                        move.model,
                        [],
                        requester=identity.user,
                        creator=creator,
                        now=utc_now(),
                        rollback=move.rollback,
                    ),
                )
                for st in statuses
            )
        rule, reason = _held_by(policy, statuses)
        if request is not None:
            return (
                rule,
                reason,
                f"Request #{request.id} is open: mlflow-governance approve {request.id}",
                request.id,
            )
        if may_request:  # audit-only mode: the request enforcement would open is not opened
            return (rule, reason, granted.hint, None)
        # Neither the move nor a request is granted: the missing permission is the rule
        # that refuses; the gate is what the move would need next.
        asking = authorize(policy, subject, "request", move.model)
        ask = asking.hint or ""
        return (
            granted.rule,
            f"{granted.reason}, nor 'request' to ask for it; the move is also held by {reason}",
            f"{granted.hint} To ask for the move instead: {ask[:1].lower()}{ask[1:]}",
            None,
        )


def _names(gates: Sequence[Gate]) -> str:
    if len(gates) == 1:
        return f"gate {gates[0].name}"
    return "gates " + ", ".join(g.name for g in gates)


def _supersede_others(
    conn: Any, request: rq.RequestView, now: Any, by: str
) -> list[rq.RequestView]:
    """Close every other open request for the same target; return those closed."""
    closed = []
    for other in rq.search(conn, model=request.model, target=request.target, states=OPEN_STATES):
        if (
            other.id != request.id
            and other.kind != KIND_REVIEW
            and rq.transition(
                conn,
                other.id,
                from_states=OPEN_STATES,
                to_state=SUPERSEDED,
                now=now,
                by=by,
                reason=f"superseded by request #{request.id}",
            )
        ):
            closed.append(other)
    return closed


def _resource(move: Move) -> str:
    if move.version is None:
        return f"model '{move.model}'"
    return f"model '{move.model}' version {move.version}"


__all__ = ["GateKeeper"]
