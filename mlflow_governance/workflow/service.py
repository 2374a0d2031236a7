"""The approval workflow: open, approve, reject, cancel, apply, check and roll back.

Each action changes request rows and appends its audit row in one transaction. Moves
themselves (applying a request, rolling back) go through the governed store's single
write path, so the gate is evaluated once more at the moment of the move.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mlflow_governance.audit.writer import DECISION_ALLOW, DECISION_DENY, AuditEntry, append
from mlflow_governance.exceptions import Conflict, GovernanceError, InvalidRequest, PermissionDenied
from mlflow_governance.identity import Identity
from mlflow_governance.policy import (
    Gate,
    Policy,
    Subject,
    authorize,
    count_approvals,
    default_policy,
    gates_for,
    may_approve,
    may_break_glass,
)
from mlflow_governance.policy._values import format_duration
from mlflow_governance.workflow import requests as rq
from mlflow_governance.workflow.gate import GateKeeper, GateStatus, Move, _fact, explain_all
from mlflow_governance.workflow.tables import (
    APPROVED,
    CANCELLED,
    EXPIRED,
    KIND_PROMOTION,
    KIND_REVIEW,
    KIND_ROLLBACK,
    OPEN_STATES,
    PENDING,
    REJECTED,
    SUPERSEDED,
)

if TYPE_CHECKING:
    from mlflow_governance.store import GovernedStore

#: The actor of housekeeping the plugin does by itself (expiring stale requests).
SYSTEM = Identity("mlflow-governance", "system")

# A break-glass move has happened already; its review stays open until approvers approve
# it, so neither rejecting nor cancelling (nor expiry) may close it quietly.
_REVIEW_STAYS = (
    "Request #{id} is the post-hoc review of a break-glass move made already: it stays "
    "pending until approved, and cannot be rejected or cancelled. To undo the move, roll "
    "it back: mlflow-governance rollback {model} --stage STAGE|--alias ALIAS."
)


def utc_now() -> datetime:
    """Naive UTC now, as stored."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Workflow:
    """Promotion requests on one governed store.

    Args:
        store: The governed store whose database holds the requests.
    """

    def __init__(self, store: GovernedStore) -> None:
        self.store = store
        self.engine = store.engine
        self.gatekeeper = GateKeeper(store)

    def policy(self) -> Policy:
        """The policy in force (the built-in default when none is configured)."""
        loaded = self.store.policies.current()
        return loaded.policy if loaded is not None else default_policy()

    # ------------------------------------------------------------------ reading

    def get(self, request_id: int) -> rq.RequestView:
        """One request, with what its gate still needs."""
        with self.engine.connect() as conn:
            view = rq.load(conn, request_id)
        return self._with_needs(view)

    def list(
        self, *, state: str | None = None, model: str | None = None, limit: int = 1000
    ) -> list[rq.RequestView]:
        """Requests, newest first; stale pending ones are expired first."""
        self.expire_stale()
        with self.engine.connect() as conn:
            views = rq.search(conn, state=state, model=model, limit=limit)
        return [self._with_needs(v) if v.state == PENDING else v for v in views]

    def _with_needs(self, view: rq.RequestView) -> rq.RequestView:
        if view.state not in OPEN_STATES or view.gate is None:
            return view
        policy = self.policy()
        gates = self._request_gates(policy, view)
        if not gates:
            return view
        try:
            statuses = self.gatekeeper.statuses(
                policy, gates, view.model, view.version, view.target, view
            )
        except Exception:  # the version may be gone; the request still shows
            return view
        from dataclasses import replace

        if view.kind == KIND_REVIEW:  # the move happened already; only approvals are owed
            statuses = tuple(GateStatus(st.gate, (), st.approvals) for st in statuses)
        return replace(view, needs=explain_all(policy, statuses))

    # ------------------------------------------------------------------ opening

    def open_request(
        self,
        identity: Identity,
        model: str,
        version: int,
        target: rq.Target,
        *,
        comment: str | None = None,
        archive_existing: bool = False,
        rollback: bool = False,
    ) -> rq.RequestView:
        """Open a promotion request, or return the open one for the same move.

        Raises:
            PermissionDenied: The actor may neither request nor make the move.
            InvalidRequest: No gate guards the target (the move needs no request).
        """
        policy = self.policy()
        version = int(version)
        self.store.raw_version(model, version)  # 404 for a missing version
        subject = Subject(identity.user, identity.groups)
        permission = Move(model, version, target).permission
        gates = self._gates(policy, model, target)
        if not gates:
            raise InvalidRequest(
                f"No gate guards moving model '{model}' to {target}: whoever holds "
                f"'{permission}' can make the move directly (no request needed)."
            )
        asking = authorize(policy, subject, "request", model)
        if not asking.granted and not authorize(policy, subject, permission, model).granted:
            self._refuse(
                identity,
                "request_promotion",
                model,
                version,
                asking.rule,
                asking.reason,
                asking.hint,
                policy,
            )
        kind = KIND_ROLLBACK if rollback else KIND_PROMOTION
        with self.engine.begin() as conn:
            for existing in rq.search(
                conn, model=model, version=version, target=target, states=OPEN_STATES
            ):
                if existing.kind != KIND_REVIEW:
                    return self._with_needs(existing)
            now = utc_now()
            request_id = rq.insert(
                conn,
                kind=kind,
                model=model,
                version=version,
                target=target,
                gate=gates[0].name,
                state=PENDING,
                requester=identity.user,
                comment=comment,
                archive_existing=archive_existing or any(g.archive_existing for g in gates),
                now=now,
            )
            entries = [
                self._entry(
                    identity,
                    "request_promotion",
                    model,
                    version,
                    target,
                    request_id,
                    {"gate": gates[0].name, "kind": kind, "comment": comment},
                )
            ]
            for other in rq.search(conn, model=model, target=target, states=OPEN_STATES):
                if other.id != request_id and other.kind != KIND_REVIEW:
                    rq.transition(
                        conn,
                        other.id,
                        from_states=OPEN_STATES,
                        to_state=SUPERSEDED,
                        now=now,
                        by=identity.user,
                        reason=f"superseded by request #{request_id}",
                    )
                    entries.append(
                        self._entry(
                            identity,
                            "supersede_request",
                            model,
                            other.version,
                            target,
                            other.id,
                            {"superseded_by": request_id},
                        )
                    )
            append(conn, entries)
        return self.get(request_id)

    # ------------------------------------------------------------------ voting

    def approve(
        self, identity: Identity, request_id: int, comment: str | None = None
    ) -> rq.RequestView:
        """Approve a request; the last approval applies it when the gate says automatic.

        Raises:
            PermissionDenied: The actor's approval would not count (not an approver, the
                requester or the version's creator under separation of duties).
            Conflict: The request is not pending, or the actor already voted.
        """
        policy = self.policy()
        self.expire_stale()
        satisfied, view, gates = self._vote(identity, request_id, "approve", comment, policy)
        automatic = all(gate.apply == "automatic" for gate in gates)
        if satisfied and view.kind != KIND_REVIEW and automatic:
            from mlflow.exceptions import MlflowException

            # The approval is committed whatever happens next; a move the gate still holds
            # back (failing checks) is reported with the approved request, not as an error.
            # The governed store raises MlflowException, so both kinds are caught.
            try:
                return self.apply(identity, request_id, automatic=True)
            except (GovernanceError, MlflowException) as exc:
                from dataclasses import replace

                return replace(self.get(request_id), extra={"apply_error": exc.message})
        return self.get(request_id)

    def reject(
        self, identity: Identity, request_id: int, comment: str | None = None
    ) -> rq.RequestView:
        """Reject a request (closes it).

        Raises:
            PermissionDenied: The actor is not an approver of the request's gate.
        """
        self._vote(identity, request_id, "reject", comment, self.policy())
        return self.get(request_id)

    def _vote(
        self,
        identity: Identity,
        request_id: int,
        decision: str,
        comment: str | None,
        policy: Policy,
    ) -> tuple[bool, rq.RequestView, tuple[Gate, ...]]:
        subject = Subject(identity.user, identity.groups)
        action = f"{decision}_request"
        refusal: tuple[str, str, str | None] | None = None
        with self.engine.begin() as conn:
            now = utc_now()
            rq.lock_open(conn, request_id, now)
            view = rq.load(conn, request_id)
            if view.state != PENDING:
                raise Conflict(
                    f"Request #{request_id} is already {view.state}: "
                    f"apply it with 'mlflow-governance promote' instead."
                )
            if decision == "reject" and view.kind == KIND_REVIEW:
                raise Conflict(_REVIEW_STAYS.format(id=request_id, model=view.model))
            gates = self._request_gates(policy, view)
            if not gates:
                raise Conflict(
                    f"Request #{request_id} names gate '{view.gate}', which the "
                    "policy in force no longer has; cancel it and request again."
                )
            # With several gates on the target, an approver of any of them may vote; the
            # request is approved when every gate counts enough approvals.
            decisions = [may_approve(policy, gate, view.model, subject) for gate in gates]
            rollback = view.kind == KIND_ROLLBACK
            wanting = [  # refused: name a gate that wants approvals, not a checks-only one
                d
                for g, d in zip(gates, decisions, strict=True)
                if g.required_approvals(rollback=rollback)
            ]
            allowed = next((d for d in decisions if d.granted), (wanting or decisions)[0])
            satisfied = False
            if not allowed.granted:
                refusal = (allowed.rule, allowed.reason, allowed.hint)
            elif decision == "approve":
                mv = self.store.raw_version(view.model, view.version)
                votes = [_fact(v) for v in view.approvals if v.decision == "approve"]
                from mlflow_governance.policy import ApprovalFact

                votes.append(ApprovalFact(identity.user, identity.groups, now))
                reports = [
                    count_approvals(
                        policy,
                        gate,
                        view.model,
                        votes,
                        requester=view.requester,
                        creator=mv.user_id,
                        now=now,
                        rollback=rollback,
                    )
                    for gate in gates
                ]
                # Why this vote does not count, per gate the voter may approve.
                mine = [
                    (gate, [why for who, why in report.discarded if who == identity.user])
                    for gate, report, may in zip(gates, reports, decisions, strict=True)
                    if may.granted
                ]
                if all(reasons for _, reasons in mine):
                    gate, reasons = mine[0]
                    refusal = (
                        f"gates.{gate.name}.approvals",
                        reasons[0],
                        "Another approver has to approve this request.",
                    )
                satisfied = all(report.satisfied for report in reports)
            if refusal is None or not policy.enforcing:
                rq.add_vote(
                    conn,
                    request_id,
                    approver=identity.user,
                    groups=sorted(identity.groups),
                    decision=decision,
                    comment=comment,
                    now=now,
                )
                if decision == "reject":
                    rq.transition(
                        conn,
                        request_id,
                        from_states=[PENDING],
                        to_state=REJECTED,
                        now=now,
                        by=identity.user,
                        reason=comment,
                    )
                elif satisfied:
                    rq.transition(
                        conn,
                        request_id,
                        from_states=[PENDING],
                        to_state=APPROVED,
                        now=now,
                        by=identity.user,
                        reason="approvals satisfied",
                    )
                append(
                    conn,
                    [
                        self._entry(
                            identity,
                            action,
                            view.model,
                            view.version,
                            view.target,
                            request_id,
                            {"comment": comment, "satisfied": satisfied},
                        )
                    ],
                )
        if refusal is not None and policy.enforcing:
            self._refuse(
                identity, action, view.model, view.version, *refusal, policy, request_id=request_id
            )
        return satisfied, view, gates

    def cancel(
        self, identity: Identity, request_id: int, comment: str | None = None
    ) -> rq.RequestView:
        """Cancel an open request: its requester, or someone holding ``policy:admin``."""
        policy = self.policy()
        cancelled = False
        with self.engine.begin() as conn:
            now = utc_now()
            rq.lock_open(conn, request_id, now)
            view = rq.load(conn, request_id)
            if view.kind == KIND_REVIEW:
                raise Conflict(_REVIEW_STAYS.format(id=request_id, model=view.model))
            admin = authorize(
                policy, Subject(identity.user, identity.groups), "policy:admin", view.model
            )
            own = identity.user == view.requester
            if own or admin.granted or not policy.enforcing:
                cancelled = True
                rq.transition(
                    conn,
                    request_id,
                    from_states=OPEN_STATES,
                    to_state=CANCELLED,
                    now=now,
                    by=identity.user,
                    reason=comment,
                )
                append(
                    conn,
                    [
                        self._entry(
                            identity,
                            "cancel_request",
                            view.model,
                            view.version,
                            view.target,
                            request_id,
                            {"comment": comment},
                        )
                    ],
                )
        if cancelled:  # read after the commit: inside the transaction it is not visible yet
            return self.get(request_id)
        self._refuse(
            identity,
            "cancel_request",
            view.model,
            view.version,
            admin.rule,
            f"only the requester ({view.requester}) or a policy admin may cancel",
            admin.hint,
            policy,
            request_id=request_id,
        )
        raise AssertionError("unreachable")  # _refuse always raises in enforce mode

    # ------------------------------------------------------------------ applying

    def apply(
        self, identity: Identity, request_id: int, *, automatic: bool = False
    ) -> rq.RequestView:
        """Make the move an approved request describes, through the governed path.

        Raises:
            Conflict: The request is not approved.
            PermissionDenied: The gate no longer passes, or the actor may not apply it.
        """
        view = self.get(request_id)
        if view.state != APPROVED:
            raise Conflict(
                f"Request #{request_id} is {view.state}, not approved"
                + (f": {view.needs}" if view.needs else "")
                + "."
            )
        move = Move(
            view.model,
            view.version,
            view.target,
            archive_existing=view.archive_existing,
            via_request=request_id if automatic else None,
            rollback=view.kind == KIND_ROLLBACK,
        )
        self.store.governed_move(identity, move)
        return self.get(request_id)

    def check(self, model: str, version: int, gate_name: str) -> GateStatus:
        """Evaluate everything a gate requires except approvals.

        Raises:
            InvalidRequest: The policy has no such gate.
        """
        policy = self.policy()
        gate = policy.gates.get(gate_name)
        if gate is None:
            valid = ", ".join(policy.gates) or "none"
            raise InvalidRequest(f"The policy has no gate '{gate_name}' (gates: {valid}).")
        stage = gate.targets.stages[0] if gate.targets.stages else None
        target = rq.Target(rq.STAGE, stage) if stage else rq.Target(rq.ALIAS, "*")
        return self.gatekeeper.status(policy, gate, model, int(version), target, None)

    def rollback(
        self, identity: Identity, model: str, target: rq.Target, comment: str | None = None
    ) -> tuple[str, rq.RequestView | None, int]:
        """Restore the version that held ``target`` before its current holder.

        Returns:
            ``("applied", None, version)`` when it moved at once, or ``("requested", request,
            version)`` when approvals are needed first.

        Raises:
            Conflict: The audit history shows no previous holder.
        """
        from mlflow_governance.audit.query import history

        with self.engine.connect() as conn:
            entered = [
                e.version
                for e in history(conn, model)
                if e.kind == target.kind
                and e.name == target.name
                and e.after is not None
                and e.version is not None
            ]
        current = self._holder(model, target)
        previous = next(
            (v for v in reversed(entered) if v != current and self._exists(model, v)), None
        )
        if previous is None:
            raise Conflict(
                f"The audit log shows no earlier holder of {target} for model '{model}' "
                f"(current: {current if current is not None else 'none'}); nothing to roll "
                "back to."
            )
        policy = self.policy()
        subject = Subject(identity.user, identity.groups)
        gates = self._gates(policy, model, target)
        move = Move(model, previous, target, rollback=True, notes={"comment": comment})
        if not gates or all(may_break_glass(policy, g, model, subject).granted for g in gates):
            self.store.governed_move(identity, move)
            return "applied", None, previous
        view = self.open_request(identity, model, previous, target, comment=comment, rollback=True)
        if view.state == PENDING and all(g.required_approvals(rollback=True) == 0 for g in gates):
            with self.engine.begin() as conn:
                rq.transition(
                    conn,
                    view.id,
                    from_states=[PENDING],
                    to_state=APPROVED,
                    now=utc_now(),
                    by=identity.user,
                    reason="rollback needs no approval",
                )
            self.apply(identity, view.id, automatic=True)
            return "applied", self.get(view.id), previous
        return "requested", view, previous

    # ------------------------------------------------------------------ housekeeping

    def expire_stale(self) -> int:
        """Expire requests their gate's ``expire_after`` has caught up with.

        A pending request older than ``expire_after`` expires; so does an approved one
        (waiting for a manual promote) whose approvals have grown too old to satisfy its
        gates any more: it could never be applied, and its approvers could not vote again.
        """
        policy = self.policy()
        horizons = {
            name: gate.approvals.expire_after
            for name, gate in policy.gates.items()
            if gate.approvals.expire_after is not None
        }
        if not horizons:
            return 0
        now = utc_now()
        expired = 0
        with self.engine.begin() as conn:
            for view in rq.search(conn, states=OPEN_STATES):
                if view.kind == KIND_REVIEW:  # owed for a move already made: never stale
                    continue
                horizon: timedelta | None = horizons.get(view.gate or "")
                if horizon is None:
                    continue
                if view.state == PENDING:
                    created = datetime.fromisoformat(view.created_at.rstrip("Z"))
                    stale, why = now - created > horizon, f"older than {format_duration(horizon)}"
                else:
                    stale = self._approvals_lapsed(policy, view, now, horizon)
                    why = f"its approvals are older than {format_duration(horizon)}"
                if stale and rq.transition(
                    conn,
                    view.id,
                    from_states=[view.state],
                    to_state=EXPIRED,
                    now=now,
                    by=SYSTEM.user,
                    reason=why,
                ):
                    append(
                        conn,
                        [
                            self._entry(
                                SYSTEM,
                                "expire_request",
                                view.model,
                                view.version,
                                view.target,
                                view.id,
                                {},
                                reason=f"request #{view.id} expired: {why}",
                            )
                        ],
                    )
                    expired += 1
        return expired

    def _approvals_lapsed(
        self, policy: Policy, view: rq.RequestView, now: datetime, horizon: timedelta
    ) -> bool:
        """Whether an approved request's approvals no longer satisfy its gates."""
        votes = [_fact(v) for v in view.approvals if v.decision == "approve"]
        if not any(now - vote.time > horizon for vote in votes):
            return False  # every approval is fresh: nothing to recount
        try:
            creator = self.store.raw_version(view.model, view.version).user_id
        except Exception:  # the version is gone: the request cannot apply anyway
            return True
        return not all(
            count_approvals(
                policy,
                gate,
                view.model,
                votes,
                requester=view.requester,
                creator=creator,
                now=now,
                rollback=view.kind == KIND_ROLLBACK,
            ).satisfied
            for gate in self._request_gates(policy, view)
        )

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _gates(policy: Policy, model: str, target: rq.Target) -> tuple[Gate, ...]:
        """Every gate in front of moving a version of ``model`` to ``target``."""
        if target.kind == rq.STAGE:
            return gates_for(policy, model, stage=target.name)
        return gates_for(policy, model, alias=target.name)

    def _request_gates(self, policy: Policy, view: rq.RequestView) -> tuple[Gate, ...]:
        """The gates a request must satisfy now: those of its target under the policy in
        force, else the gate it was filed under (when the policy still has it)."""
        gates = self._gates(policy, view.model, view.target)
        if gates:
            return gates
        filed = policy.gates.get(view.gate or "")
        return (filed,) if filed is not None else ()

    def _holder(self, model: str, target: rq.Target) -> int | None:
        if target.kind == rq.ALIAS:
            try:
                return int(self.store.raw_version_by_alias(model, target.name).version)
            except Exception:
                return None
        versions = self.store.raw_latest_versions(model, [target.name])
        return int(versions[0].version) if versions else None

    def _exists(self, model: str, version: int) -> bool:
        try:
            return self.store.raw_version(model, version).current_stage != "Deleted_Internal"
        except Exception:
            return False

    @staticmethod
    def _entry(
        identity: Identity,
        action: str,
        model: str,
        version: int,
        target: rq.Target,
        request_id: int,
        details: dict[str, Any],
        decision: str = DECISION_ALLOW,
        reason: str | None = None,
        rule: str | None = None,
    ) -> AuditEntry:
        details = {k: v for k, v in details.items() if v is not None}
        details["target"] = str(target)
        if reason is None:
            verb = action.replace("_request", "").replace("request_promotion", "open")
            reason = f"{verb} request #{request_id}: version {version} to {target}"
        return AuditEntry(
            action=action,
            identity=identity,
            decision=decision,
            model=model,
            version=version,
            request_id=request_id,
            details=details,
            reason=reason,
            rule=rule,
        )

    def _refuse(
        self,
        identity: Identity,
        action: str,
        model: str,
        version: int,
        rule: str,
        reason: str,
        hint: str | None,
        policy: Policy,
        request_id: int | None = None,
    ) -> None:
        if not policy.enforcing:
            return
        with self.engine.begin() as conn:
            append(
                conn,
                [
                    AuditEntry(
                        action=action,
                        identity=identity,
                        decision=DECISION_DENY,
                        model=model,
                        version=version,
                        request_id=request_id,
                        reason=reason,
                        rule=rule,
                    )
                ],
            )
        raise PermissionDenied(
            actor=identity.user,
            action=action.replace("_", " "),
            resource=f"model '{model}' version {version}",
            reason=reason,
            rule=rule,
            hint=hint,
            request_id=request_id,
        )


__all__ = ["SYSTEM", "Workflow", "sa", "utc_now"]
