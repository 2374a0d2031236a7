"""The gate in front of every stage transition and alias move, whatever the client.

A stock ``transition_model_version_stage`` or ``set_registered_model_alias`` call, the
automatic apply at the last approval, ``promote`` and ``rollback`` all pass through
:meth:`GateKeeper.guard`, inside the write's own transaction on the model's locked
row. It lets a move through when the policy grants it and no gate
applies, when an approved request for exactly that move satisfies the gate now, or when
the actor holds a break-glass role (which leaves a review request open). Otherwise it
refuses, saying whether the pending request should be opened (or reused) for someone
allowed to ask. The guard returns a :class:`~mlflow_governance.workflow.moves.Verdict`
and calls nothing back: the store audits the refusal and opens the request once the
write's transaction is rolled back. Stages and aliases are governed alike, so an alias is never a
way around a stage gate, and moving out of a gated stage needs the same right as moving in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from mlflow_governance.clock import utc_now
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
from mlflow_governance.workflow import request_rows as rq
from mlflow_governance.workflow.commit_hooks import apply_through, break_glass
from mlflow_governance.workflow.facts import version_facts
from mlflow_governance.workflow.moves import GateStatus, Move, Verdict, _fact, _held_by
from mlflow_governance.workflow.tables import (
    APPROVED,
    KIND_REVIEW,
    KIND_ROLLBACK,
    PENDING,
)

if TYPE_CHECKING:
    from mlflow_governance.audit.capture import Operation
    from mlflow_governance.identity import Identity
    from mlflow_governance.state import LockedModel, VersionState
    from mlflow_governance.workflow.registry import Registry


class GateKeeper:
    """Decides gated moves for one governed registry.

    Args:
        store: The governed registry (for raw reads outside a write and the tracking URI).
    """

    def __init__(self, store: Registry) -> None:
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
        held: VersionState | None = None,
        actor: str | None = None,
    ) -> GateStatus:
        """Evaluate a gate's checks (and a request's approvals) for a version now.

        Args:
            held: The version as the current write transaction sees it; without it the
                version is read on its own (for reports outside a write).
            actor: Who asks for a move made without a request (metric provenance
                checks compare the metric's logger with the request's requester).
        """
        if held is not None:
            mv, download_uri = held.entity(), held.download_uri
        else:
            mv = self.store.raw_version(model, version)
            download_uri = self.store.raw_download_uri(model, version)
        facts = version_facts(mv, (gate,), self.store.tracking_uri, download_uri)
        if request is not None:
            checks = evaluate_checks(
                gate,
                facts,
                request_time=datetime.fromisoformat(request.created_at.rstrip("Z")),
                requester=request.requester,
            )
        else:
            checks = evaluate_checks(gate, facts, requester=actor)
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
                workspace=self.store.active_workspace(),
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
        held: VersionState | None = None,
        actor: str | None = None,
    ) -> tuple[GateStatus, ...]:
        """:meth:`status` for each gate in front of a move: every one must pass."""
        return tuple(
            self.status(
                policy,
                gate,
                model,
                version,
                target,
                request,
                rollback=rollback,
                held=held,
                actor=actor,
            )
            for gate in gates
        )

    # ------------------------------------------------------------------ the guard

    def guard(
        self, identity: Identity, policy: Policy, move: Move, op: Operation, locked: LockedModel
    ) -> Verdict | None:
        """Decide a move inside its write transaction, on the model's locked row.

        Args:
            identity: The actor.
            policy: The policy in force.
            move: The move, its model spelled as stored.
            op: The operation about to run; gets rule, reason, request id and the
                in-transaction hooks (marking a request applied, opening a review).
            locked: The model, locked by the write's transaction.

        Returns:
            None when the move may go ahead, else why it is refused.
        """
        subject = Subject(identity.user, identity.groups, locked.workspace)
        held = locked.version(move.version) if move.version is not None else None
        if move.version is not None and held is None:
            return None  # no such version: MLflow refuses the write with its own error
        verdict = self._target_refusal(identity, policy, subject, move, op, locked, held)
        if verdict is None and op.request_id is None and not op.details.get("break_glass"):
            # A move through a satisfied gate (an approved request, break glass) was
            # sanctioned as a whole, leaving the current stage included: the production
            # gate's approvers let a version leave a gated Staging. Direct moves need the
            # right to leave a gated stage as well as the right to enter the target.
            verdict = self._exit_refusal(policy, subject, move, held)
        if verdict is None:
            verdict = self._archive_refusal(policy, subject, move, op, locked)
        return verdict

    def _exit_refusal(
        self, policy: Policy, subject: Subject, move: Move, held: VersionState | None
    ) -> Verdict | None:
        if move.target.kind != rq.STAGE or held is None:
            return None
        current = held.stage
        if current == move.target.name or not gates_for(policy, move.model, stage=current):
            return None
        decision = authorize(policy, subject, f"transition:{current}", move.model)
        if decision.granted:
            return None
        return Verdict(
            decision.rule,
            f"version {move.version} stands in gated stage {current}; moving it out needs "
            f"'transition:{current}' as moving in does ({decision.reason})",
            decision.hint,
            action=move.permission,
        )

    def _archive_refusal(
        self, policy: Policy, subject: Subject, move: Move, op: Operation, locked: LockedModel
    ) -> Verdict | None:
        """Archiving the other versions of the target stage moves them too.

        It is part of the move when the approved request being applied included it,
        when a gate in front of the target says ``archive_existing``, or in a break-glass
        move; otherwise the actor needs what moving those versions needs.
        """
        if move.target.kind != rq.STAGE or not move.archive_existing:
            return None
        others = [v.number for v in locked.in_stage(move.target.name) if v.number != move.version]
        if not others:
            return None
        applied: rq.RequestView | None = move.notes.get("request")
        gates = gates_for(policy, move.model, stage=move.target.name)
        if (
            (applied is not None and applied.archive_existing)
            or any(g.archive_existing for g in gates)
            or op.details.get("break_glass")
        ):
            return None
        needed = ["transition:Archived"] + ([f"transition:{move.target.name}"] if gates else [])
        for permission in needed:
            decision = authorize(policy, subject, permission, move.model)
            if decision.refused:
                listed = ", ".join(str(v) for v in others)
                via = (
                    f"request #{applied.id} was approved without archiving them"
                    if applied is not None
                    else "archiving is not part of any approved request"
                )
                return Verdict(
                    decision.rule,
                    f"the move would archive version(s) {listed} of {move.target.name}; {via}, "
                    f"and archiving them needs '{permission}' ({decision.reason})",
                    "Make the move without archive_existing_versions, or request it with "
                    "archiving included.",
                    action=move.permission,
                    request_id=applied.id if applied is not None else None,
                )
        return None

    def _target_refusal(
        self,
        identity: Identity,
        policy: Policy,
        subject: Subject,
        move: Move,
        op: Operation,
        locked: LockedModel,
        held: VersionState | None,
    ) -> Verdict | None:
        granted = authorize(policy, subject, move.permission, move.model)
        gates = _gates_of(policy, move, locked)
        action = move.permission if not move.removing else f"remove {move.target}"
        if move.removing or not gates:
            if granted.granted:
                op.rule, op.reason = granted.rule, granted.reason
                return None
            return Verdict(granted.rule, granted.reason, granted.hint, action=action)
        assert move.version is not None and held is not None  # only removals have none
        # Several gates may guard one target: each must be satisfied (and may break glass).
        gate = gates[0]
        op.details["gate"] = gate.name if len(gates) == 1 else [g.name for g in gates]
        request, stale = self._approved_request(move, locked, held)
        held_back: Verdict | None = None
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
                held=held,
            )
            if may_apply and all(st.passed for st in statuses):
                move.notes["request"] = request
                apply_through(op, request, gate, locked)
                return None
            if not may_apply:
                held_back = Verdict(
                    granted.rule,
                    f"request #{request.id} is approved but {granted.reason}",
                    granted.hint,
                    action=action,
                    request_id=request.id,
                )
            else:
                rule, reason = _held_by(policy, statuses)
                held_back = Verdict(
                    rule,
                    reason,
                    f"Request #{request.id} is approved but cannot apply yet: once the gate "
                    f"passes, apply it with mlflow-governance promote {move.model} "
                    f"{move.version} --to {move.target}",
                    action=action,
                    request_id=request.id,
                )
        elif stale is not None:
            return Verdict(
                f"gates.{gate.name}",
                f"request #{stale} was filed for another version {move.version} of "
                f"'{move.model}' (the model or version was deleted or renamed and made "
                "again since); its approvals do not carry over",
                "Request the move again for this version.",
                action=action,
                request_id=stale,
            )
        # Break glass is for when the gate cannot be satisfied in time, so an approved
        # request that cannot apply (e.g. failing checks) does not stand in its way.
        glass = all(may_break_glass(policy, g, move.model, subject).granted for g in gates)
        if glass and move.via_request is None:
            break_glass(op, move, gate, identity, rq.VersionIdentity.of(locked, held))
            return None
        if held_back is not None:
            return held_back
        may_request = granted.granted or authorize(policy, subject, "request", move.model).granted
        if may_request and all(g.required_approvals(rollback=move.rollback) == 0 for g in gates):
            # Gates of checks only: whoever may move or ask for the move passes them when
            # the checks pass (as a rollback with rollback_approvals: 0 does).
            statuses = self.statuses(
                policy,
                gates,
                move.model,
                move.version,
                move.target,
                None,
                rollback=move.rollback,
                held=held,
                actor=identity.user,
            )
            if all(st.passed for st in statuses):
                op.rule = f"gates.{gate.name}"
                op.reason = f"{_names(gates)}: checks pass and no approvals are required"
                return None
        return self._refusal(
            identity, policy, subject, move, gates, granted, locked, held, may_request=may_request
        )

    def _approved_request(
        self, move: Move, locked: LockedModel, held: VersionState
    ) -> tuple[rq.RequestView | None, int | None]:
        """The approved request for exactly this version and target.

        Returns:
            ``(request, None)``, or ``(None, id)`` when the request named to apply was
            filed for another version that carried the same name and number.
        """
        identity = rq.VersionIdentity.of(locked, held)
        conn = locked.connection
        if move.via_request is not None:
            view = rq.load(conn, move.via_request)
            if not view.identity.matches(identity):
                return None, view.id
            return view, None
        found = rq.search(
            conn,
            model=move.model,
            version=move.version,
            target=move.target,
            state=APPROVED,
            identity=identity,
        )
        # An approved review only acknowledges a break-glass move made already; it must
        # never authorise a later move of the same version to the same target.
        return next((view for view in found if view.kind != KIND_REVIEW), None), None

    def _refusal(
        self,
        identity: Identity,
        policy: Policy,
        subject: Subject,
        move: Move,
        gates: Sequence[Gate],
        granted: Decision,
        locked: LockedModel,
        held: VersionState,
        *,
        may_request: bool,
    ) -> Verdict:
        """Why the gates hold the move back, counting the pending request's approvals."""
        assert move.version is not None
        action = move.permission
        pending = next(
            (
                view
                for view in rq.search(
                    locked.connection,
                    model=move.model,
                    version=move.version,
                    target=move.target,
                    state=PENDING,
                    identity=rq.VersionIdentity.of(locked, held),
                )
                if view.kind != KIND_REVIEW
            ),
            None,
        )
        statuses = self.statuses(
            policy,
            gates,
            move.model,
            move.version,
            move.target,
            pending,
            rollback=move.rollback,
            held=held,
            actor=identity.user,
        )
        if pending is None:  # count the no approvals there are, to say what is needed
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
                        creator=held.creator,
                        now=utc_now(),
                        rollback=move.rollback,
                        workspace=locked.workspace,
                    ),
                )
                for st in statuses
            )
        rule, reason = _held_by(policy, statuses)
        if may_request:
            # Enforcing: the store opens (or reuses) the request once this write is rolled
            # back. Audit-only: the request enforcement would open is not opened.
            return Verdict(rule, reason, granted.hint, action=action, open_request=policy.enforcing)
        # Neither the move nor a request is granted: the missing permission is the rule
        # that refuses; the gate is what the move would need next.
        asking = authorize(policy, subject, "request", move.model)
        ask = asking.hint or ""
        return Verdict(
            granted.rule,
            f"{granted.reason}, nor 'request' to ask for it; the move is also held by {reason}",
            f"{granted.hint} To ask for the move instead: {ask[:1].lower()}{ask[1:]}",
            action=action,
        )


def _gates_of(policy: Policy, move: Move, locked: LockedModel) -> tuple[Gate, ...]:
    """The gates in front of a move, as the database will compare its alias name.

    On case- and accent-insensitive backends an alias that does not exist yet is created
    with the caller's spelling and then answers to every spelling that folds alike, so a
    gate on ``champion`` also guards ``CHAMPION``.
    """
    if move.target.kind == rq.STAGE:
        return gates_for(policy, move.model, stage=move.target.name)
    gates = gates_for(policy, move.model, alias=move.target.name)
    if not locked.folding:
        return gates
    from mlflow_governance.state import fold

    folded = fold(move.target.name)
    extra = tuple(
        gate
        for gate in policy.gates.values()
        if gate not in gates
        and gate.model_globs.match(move.model)
        and any(gate.alias_globs.match(candidate) for candidate in _spellings(gate, folded))
    )
    return gates + extra


def _spellings(gate: Gate, folded: str) -> tuple[str, ...]:
    # The gate's own literal aliases that fold to the caller's alias stand for it.
    from mlflow_governance.state import fold

    return (folded, *(alias for alias in gate.targets.aliases if fold(alias) == folded))


def _names(gates: Sequence[Gate]) -> str:
    if len(gates) == 1:
        return f"gate {gates[0].name}"
    return "gates " + ", ".join(g.name for g in gates)


__all__ = ["GateKeeper"]
