"""What the REST routes and the page do, once: each call authorised by the policy.

The approval actions themselves are the :class:`~mlflow_governance.workflow.promotion.Workflow`
the CLI and ``GovernanceClient`` use, which check request and approve rights. Reading
requests needs ``read`` on their model; the audit log and history need ``audit:read``.
Refusals are audited like every other refused attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlflow_governance.audit.chain import parse_time as parse_iso
from mlflow_governance.audit.query import AuditFilter, history, holders_at, list_rows
from mlflow_governance.audit.writer import DECISION_DENY, AuditEntry, append
from mlflow_governance.exceptions import InvalidRequest, PermissionDenied
from mlflow_governance.identity import Identity
from mlflow_governance.policy import (
    Policy,
    Subject,
    authorize,
    effective_groups,
    may_approve,
    policy_to_dict,
)
from mlflow_governance.server.bounds import MAX_VERSION, parse_id, parse_int
from mlflow_governance.server.extension import Governance
from mlflow_governance.workflow.request_rows import RequestView, Target

#: Upper bound on rows one audit listing returns.
MAX_AUDIT_ROWS = 5000
DEFAULT_AUDIT_ROWS = 100

_DECISIONS = ("allow", "deny", "would-deny")
_VOTES = ("approve", "reject", "cancel")


def parse_time(value: str | None, name: str) -> datetime | None:
    """Parse an ISO-8601 time (``Z`` or an offset allowed; naive means UTC).

    Raises:
        InvalidRequest: Not an ISO-8601 time.
    """
    if value is None or not value.strip():
        return None
    try:
        return parse_iso(value)
    except (ValueError, OverflowError):  # OverflowError: a year beyond 9999 after the offset
        raise InvalidRequest(
            f"{name}={value!r} is not an ISO-8601 time; e.g. 2026-11-01T12:00:00Z or 2026-11-01."
        ) from None


@dataclass
class Service:
    """The governance actions of one request's caller.

    Args:
        ext: The registered extension (store, workflow, auth mode).
        identity: The authenticated caller.
    """

    ext: Governance
    identity: Identity

    # ------------------------------------------------------------------ policy

    @property
    def subject(self) -> Subject:
        """The caller as the policy sees them, in the request's workspace."""
        return self.ext.store().subject_of(self.identity)

    def policy(self) -> Policy:
        """The policy in force (re-read within seconds of a change, in every process)."""
        return self.ext.workflow().policy()

    def may(self, permission: str, model: str | None) -> bool:
        """Whether the caller may ``permission`` on ``model`` (audit-only allows all)."""
        return not authorize(self.policy(), self.subject, permission, model).refused

    def require(self, permission: str, model: str | None, action: str) -> None:
        """Refuse (and audit the refusal) unless the policy grants ``permission``.

        Raises:
            PermissionDenied: Not granted in enforce mode.
        """
        decision = authorize(self.policy(), self.subject, permission, model)
        if not decision.refused:
            return
        store = self.ext.store()
        with store.engine.begin() as conn:
            append(
                conn,
                [
                    AuditEntry(
                        action=action,
                        identity=self.identity,
                        decision=DECISION_DENY,
                        model=model,
                        reason=decision.reason,
                        rule=decision.rule,
                    )
                ],
            )
        raise PermissionDenied(
            actor=self.identity.user,
            action=permission,
            resource=f"model '{model}'" if model is not None else "every model",
            reason=decision.reason,
            rule=decision.rule,
            hint=decision.hint,
        )

    # ------------------------------------------------------------------ requests

    def requests(self, state: str | None = None, model: str | None = None) -> list[RequestView]:
        """Requests on models the caller may read, newest first."""
        views = self.ext.workflow().list(state=state or None, model=model or None)
        readable: dict[str, bool] = {}
        out = []
        for view in views:
            if view.model not in readable:
                readable[view.model] = self.may("read", view.model)
            if readable[view.model]:
                out.append(view)
        return out

    def request(self, request_id: int) -> RequestView:
        """One request (``read`` on its model needed)."""
        view = self.ext.workflow().get(request_id)
        self.require("read", view.model, "read_request")
        return view

    def open_request(
        self, model: Any, version: Any, target: Any, comment: Any = None
    ) -> RequestView:
        """Open (or reuse) a promotion request; the workflow checks ``request`` rights."""
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model must be a registered model name.")
        if not isinstance(target, str) or not target:
            raise InvalidRequest("target must be a stage (Production) or an alias (@champion).")
        if comment is not None and not isinstance(comment, str):
            raise InvalidRequest("comment must be a string.")
        number = parse_id(version, "version", maximum=MAX_VERSION)
        return self.ext.workflow().open_request(
            self.identity, model, number, Target.parse(target), comment=comment
        )

    def may_vote(self, view: RequestView) -> bool:
        """Whether the caller is an approver of the request's gate (for showing buttons).

        Separation of duties is the workflow's to check when the vote is cast.
        """
        policy = self.policy()
        gate = policy.gates.get(view.gate or "")
        if gate is None or not policy.enforcing:
            return gate is not None
        return bool(may_approve(policy, gate, view.model, self.subject).granted)

    def vote(self, request_id: int, action: str, comment: Any = None) -> RequestView:
        """Approve, reject or cancel a request (the workflow checks the caller's rights)."""
        if action not in _VOTES:
            raise InvalidRequest(f"Unknown action {action!r} (valid: {', '.join(_VOTES)}).")
        if comment is not None and not isinstance(comment, str):
            raise InvalidRequest("comment must be a string.")
        flow = self.ext.workflow()
        if action == "approve":
            return flow.approve(self.identity, request_id, comment or None)
        if action == "reject":
            return flow.reject(self.identity, request_id, comment or None)
        flow.cancel(self.identity, request_id, comment or None)
        # Read again once cancel's transaction has committed: the view it returns is
        # read from inside that transaction's lifetime and may predate the change.
        return flow.get(request_id)

    # ------------------------------------------------------------------ audit

    def audit(self, args: dict[str, str]) -> list[dict[str, Any]]:
        """Audit rows matching the filters of ``mlflow-governance audit list``.

        Args:
            args: Query parameters: model, version, actor, workspace, action, decision,
                since, until, limit (default 100, at most 5000), newest_first.
        """
        model = args.get("model") or None
        self.require("audit:read", model, "read_audit")
        decision = args.get("decision") or None
        if decision is not None and decision not in _DECISIONS:
            raise InvalidRequest(
                f"decision={decision!r} is not a decision (valid: {', '.join(_DECISIONS)})."
            )
        raw_version = args.get("version")
        raw_limit = args.get("limit")
        flt = AuditFilter(
            model=model,
            version=parse_id(raw_version, "version", maximum=MAX_VERSION) if raw_version else None,
            actor=args.get("actor") or None,
            workspace=args.get("workspace") or None,
            action=args.get("action") or None,
            decision=decision,
            since=parse_time(args.get("since"), "since"),
            until=parse_time(args.get("until"), "until"),
            limit=min(
                parse_int(raw_limit, "limit", minimum=1) if raw_limit else DEFAULT_AUDIT_ROWS,
                MAX_AUDIT_ROWS,
            ),
            newest_first=(args.get("newest_first") or "").lower() in ("1", "true", "yes"),
        )
        with self.ext.store().engine.connect() as conn:
            return list_rows(conn, flt)

    def history(self, model: str | None, at: str | None = None) -> list[dict[str, Any]]:
        """Stage and alias changes of a model, or its holders at ``at`` (as the CLI)."""
        if not model:
            raise InvalidRequest("model is required: the registered model whose history to show.")
        self.require("audit:read", model, "read_history")
        when = parse_time(at, "at")
        store = self.ext.store()
        with store.engine.connect() as conn:
            events = history(conn, model, when, workspace=store.active_workspace())
        if when is None:
            return [event.to_dict() for event in events]
        return [dict(holding.__dict__) for holding in holders_at(events)]

    # ------------------------------------------------------------------ who and what

    def whoami(self) -> dict[str, Any]:
        """The caller as the server authenticated them."""
        groups = effective_groups(self.policy(), self.subject)
        return {
            "user": self.identity.user,
            "identity_source": self.identity.source,
            "groups": sorted(groups),
            "auth": self.ext.auth_mode,
            "client_address": self.identity.client_address,
            "user_agent": self.identity.user_agent,
        }

    def policy_document(self) -> dict[str, Any]:
        """The policy in force and its origin.

        Any authenticated user may read the rules they are held to; notification targets
        (webhook URLs, queues) are shown only to holders of ``policy:admin``.
        """
        loaded = self.ext.store().policies.current()
        if loaded is None:
            return {
                "origin": "default",
                "mode": "audit-only",
                "policy": {"version": 1, "mode": "audit-only"},
            }
        data = policy_to_dict(loaded.policy)
        admin = authorize(loaded.policy, self.subject, "policy:admin", None).granted
        if not admin:
            data["notifications"] = [
                {"type": n["type"], "events": n.get("events", [])} for n in data["notifications"]
            ]
        return {"origin": loaded.origin, "mode": loaded.policy.mode, "policy": data}
