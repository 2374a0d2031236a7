"""The approval workflow: open, approve, reject, cancel, apply, check and roll back.

Each action changes request rows and appends its audit row in one transaction. Moves
themselves (applying a request, rolling back) go through the governed store's single
write path, so the gate is evaluated once more at the moment of the move.
"""

from __future__ import annotations

from mlflow_governance.audit.writer import append
from mlflow_governance.clock import utc_now
from mlflow_governance.exceptions import Conflict, GovernanceError, InvalidRequest
from mlflow_governance.identity import Identity
from mlflow_governance.policy import (
    Gate,
    Policy,
    authorize,
    count_approvals,
    may_approve,
    may_break_glass,
)
from mlflow_governance.workflow import request_rows as rq
from mlflow_governance.workflow._base import WorkflowBase
from mlflow_governance.workflow.advice import REVIEW_STAYS, gate_gone, not_pending
from mlflow_governance.workflow.moves import Move, _fact
from mlflow_governance.workflow.tables import (
    APPROVED,
    CANCELLED,
    KIND_PROMOTION,
    KIND_REVIEW,
    KIND_ROLLBACK,
    OPEN_STATES,
    PENDING,
    REJECTED,
    SUPERSEDED,
)


class Workflow(WorkflowBase):
    """Promotion requests on one governed store: open, vote, cancel, apply, roll back.

    Args:
        store: The governed store whose database holds the requests.
    """

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
        # 404 for a missing version; the request is filed under the name as stored and
        # bound to this very version, not to whatever later carries its name and number.
        model, bound = self.store.raw_identity(model, version)
        subject = self.store.subject_of(identity)
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
                conn,
                model=model,
                version=version,
                target=target,
                states=OPEN_STATES,
                identity=bound,
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
                identity=bound,
            )
            entries = [
                self._entry(
                    identity,
                    "request_promotion",
                    model,
                    version,
                    target,
                    request_id,
                    {
                        "gate": gates[0].name,
                        "kind": kind,
                        "comment": comment,
                        # What approvers are asked for (events and their messages say it).
                        "approvals_missing": max(
                            g.required_approvals(rollback=rollback) for g in gates
                        ),
                        "approver_roles": sorted(
                            {r for g in gates for r in g.approvals.approver_roles}
                        ),
                    },
                )
            ]
            for other in rq.search(
                conn,
                model=model,
                target=target,
                states=OPEN_STATES,
                workspace=bound.workspace,
                any_workspace=False,
            ):
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
        self._end_if_gone(request_id)
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
        subject = self.store.subject_of(identity)
        action = f"{decision}_request"
        refusal: tuple[str, str, str | None] | None = None
        with self.engine.begin() as conn:
            now = utc_now()
            rq.lock_open(conn, request_id, now)
            view = self._visible(rq.load(conn, request_id))
            if view.state != PENDING:
                raise Conflict(not_pending(view))
            if decision == "reject" and view.kind == KIND_REVIEW:
                raise Conflict(REVIEW_STAYS.format(id=request_id, model=view.model))
            gates = self._request_gates(policy, view)
            if not gates:
                loaded = self.store.policies.current()
                raise Conflict(gate_gone(view, loaded.origin if loaded else None))
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
            missing: int | None = None
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
                        workspace=self.store.active_workspace(),
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
                missing = max(report.missing for report in reports)
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
                            {
                                "comment": comment,
                                "satisfied": satisfied,
                                "approvals_missing": missing,
                            },
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
            view = self._visible(rq.load(conn, request_id))
            if view.kind == KIND_REVIEW:
                raise Conflict(REVIEW_STAYS.format(id=request_id, model=view.model))
            admin = authorize(policy, self.store.subject_of(identity), "policy:admin", view.model)
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
        self._end_if_gone(request_id)
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
        from mlflow_governance.audit.history import history

        with self.engine.connect() as conn:
            entered = [
                (e.version, e.time)
                for e in history(conn, model, workspace=self.store.active_workspace())
                if e.kind == target.kind
                and e.name == target.name
                and e.after is not None
                and e.version is not None
            ]
        current = self._holder(model, target)
        # Only a version that is still the one that held the target: a model deleted (or
        # renamed away) and made again reuses names and numbers for unreviewed versions.
        previous = next(
            (
                v
                for v, when in reversed(entered)
                if v != current and self._held_then(model, v, when)
            ),
            None,
        )
        if previous is None:
            raise Conflict(
                f"The audit log shows no earlier holder of {target} for model '{model}' "
                f"(current: {current if current is not None else 'none'}) that still exists "
                "as it was then; nothing to roll back to."
            )
        policy = self.policy()
        subject = self.store.subject_of(identity)
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


__all__ = ["Workflow"]
