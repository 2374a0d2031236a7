"""The ground the approval workflow stands on: reading requests and shared helpers.

:class:`WorkflowBase` reads requests (with what their gates still need), finds the gates
and holders of a target, and writes the audit rows of workflow actions and refusals.
:mod:`mlflow_governance.workflow.promotion` builds the actions on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from mlflow_governance.audit.refusal import refusal
from mlflow_governance.audit.writer import DECISION_ALLOW, AuditEntry, append
from mlflow_governance.clock import utc_now
from mlflow_governance.exceptions import Conflict, InvalidRequest, NotFound
from mlflow_governance.identity import Identity
from mlflow_governance.policy import (
    Gate,
    Policy,
    count_approvals,
    default_policy,
    gates_for,
)
from mlflow_governance.policy._values import format_duration
from mlflow_governance.workflow import request_rows as rq
from mlflow_governance.workflow.gate import GateKeeper
from mlflow_governance.workflow.moves import GateStatus, _fact, explain_all
from mlflow_governance.workflow.registry import Registry
from mlflow_governance.workflow.tables import (
    CANCELLED,
    EXPIRED,
    KIND_REVIEW,
    KIND_ROLLBACK,
    OPEN_STATES,
    PENDING,
)

#: The actor of housekeeping the plugin does by itself (expiring stale requests).
SYSTEM = Identity("mlflow-governance", "system")


class WorkflowBase:
    """Requests on one governed store: reading and shared helpers.

    Args:
        store: The governed registry whose database holds the requests (the
            :class:`~mlflow_governance.store.GovernedStore`, seen through
            :class:`~mlflow_governance.workflow.registry.Registry`).
    """

    def __init__(self, store: Registry) -> None:
        self.store = store
        self.engine = store.engine
        self.gatekeeper = GateKeeper(store)

    def policy(self) -> Policy:
        """The policy in force (the built-in default when none is configured)."""
        loaded = self.store.policies.current()
        return loaded.policy if loaded is not None else default_policy()

    # ------------------------------------------------------------------ reading

    def get(self, request_id: int) -> rq.RequestView:
        """One request, with what its gate still needs.

        Raises:
            NotFound: No such request (in the workspace of the call, on workspace-aware
                servers: another workspace's requests are not there to see).
        """
        with self.engine.connect() as conn:
            view = self._visible(rq.load(conn, request_id))
        return self._with_needs(view)

    def _visible(self, view: rq.RequestView) -> rq.RequestView:
        """The request, if it belongs to the call's workspace (workspace-aware stores).

        Raises:
            NotFound: It belongs to another workspace, whose requests are not there to
                see, vote on or cancel.
        """
        if self.store.supports_workspaces and view.identity.workspace not in (
            None,
            self.store.active_workspace(),
        ):
            raise NotFound(
                f"Promotion request #{view.id} does not exist; list requests with "
                "'mlflow-governance requests'."
            )
        return view

    def list(
        self, *, state: str | None = None, model: str | None = None, limit: int = 1000
    ) -> list[rq.RequestView]:
        """Requests, newest first; stale pending ones are expired first."""
        self.expire_stale()
        with self.engine.connect() as conn:
            views = rq.search(
                conn,
                state=state,
                model=model,
                limit=limit,
                workspace=self.store.active_workspace(),
                any_workspace=not self.store.supports_workspaces,
            )
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
                workspace=self.store.active_workspace(),
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

    def _held_then(self, model: str, version: int, when: str) -> bool:
        """Whether the live version ``version`` is the one that held a target at ``when``.

        A version (and its model) created after that moment carries the name and number
        of another, deleted one.
        """
        try:
            _, bound = self.store.raw_identity(model, version)
        except Exception:  # deleted, or never existed
            return False
        moment = datetime.fromisoformat(when.rstrip("Z")).replace(tzinfo=timezone.utc)
        millis = int(moment.timestamp() * 1000)
        return (bound.model_created or 0) <= millis and (bound.version_created or 0) <= millis

    def _bound(self, view: rq.RequestView) -> bool:
        """Whether the version a request was filed for still exists as it was."""
        try:
            _, bound = self.store.raw_identity(view.model, view.version)
        except Exception:
            return False
        return view.identity.matches(bound)

    def _end_if_gone(self, request_id: int) -> None:
        """Cancel an open request whose version no longer exists as it was filed for.

        Deleting or renaming a model ends its requests in the same transaction; this
        catches what that cannot (requests filed before requests were bound to versions).

        Raises:
            Conflict: The request was cancelled, so nothing can be voted or applied.
        """
        view = self.get(request_id)
        if view.state not in OPEN_STATES or view.kind == KIND_REVIEW or self._bound(view):
            return
        why = (
            f"version {view.version} of '{view.model}' no longer exists as it was when the "
            "request was filed (deleted, or its model deleted or renamed and made again)"
        )
        with self.engine.begin() as conn:
            if rq.transition(
                conn,
                request_id,
                from_states=OPEN_STATES,
                to_state=CANCELLED,
                now=utc_now(),
                by=SYSTEM.user,
                reason=why,
            ):
                append(
                    conn,
                    [
                        self._entry(
                            SYSTEM,
                            "cancel_request",
                            view.model,
                            view.version,
                            view.target,
                            request_id,
                            {},
                            reason=f"request #{request_id} cancelled: {why}",
                        )
                    ],
                )
        raise Conflict(f"Request #{request_id} was cancelled: {why}. Request the move again.")

    def _entry(
        self,
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
            workspace=self.store.active_workspace(),
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
        raise refusal(
            self.engine,
            identity,
            action=action,
            asked=action.replace("_", " "),
            resource=f"model '{model}' version {version}",
            reason=reason,
            rule=rule,
            hint=hint,
            model=model,
            version=version,
            request_id=request_id,
        )

    def check(
        self, model: str, version: int, gate_name: str, actor: str | None = None
    ) -> GateStatus:
        """Evaluate everything a gate requires except approvals.

        Args:
            model: The registered model.
            version: The version.
            gate_name: The gate.
            actor: Who would ask for the move (metric provenance compares the metric's
                logger with them).

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
        return self.gatekeeper.status(policy, gate, model, int(version), target, None, actor=actor)


__all__ = ["SYSTEM", "WorkflowBase"]
