"""Promotion requests: list, read, open, approve, reject and cancel."""

from __future__ import annotations

from typing import Any

from mlflow_governance.application._core import ServiceCore, comment_arg, text_arg, version_arg
from mlflow_governance.exceptions import InvalidRequest
from mlflow_governance.identity import Identity
from mlflow_governance.inputs import parse_id
from mlflow_governance.policy import may_approve
from mlflow_governance.workflow.request_rows import RequestView, Target
from mlflow_governance.workflow.tables import PENDING, STATES

VOTES = ("approve", "reject", "cancel")


class ApprovalActions(ServiceCore):
    """Requests and votes, each authorised for the caller."""

    def list_requests(
        self, identity: Identity, state: str | None = None, model: str | None = None
    ) -> list[dict[str, Any]]:
        """Requests on models the caller may read, newest first.

        Raises:
            InvalidRequest: ``state`` is not a request state.
        """
        return [view.to_dict() for view in self.request_views(identity, state, model)]

    def request_views(
        self, identity: Identity, state: str | None = None, model: str | None = None
    ) -> list[RequestView]:
        """:meth:`list_requests` as views, for the page's templates."""
        if state and state not in STATES:
            raise InvalidRequest(
                f"state={state!r} is not a request state (valid: {', '.join(STATES)})."
            )
        readable: dict[str, bool] = {}
        shown = []
        for view in self.workflow.list(state=state or None, model=model or None):
            if view.model not in readable:
                readable[view.model] = self.may(identity, "read", view.model)
            if readable[view.model]:
                shown.append(view)
        return shown

    def get_request(self, identity: Identity, request_id: Any) -> dict[str, Any]:
        """One request with its approvals and what its gate still needs (``read`` needed)."""
        return self.request_view(identity, request_id).to_dict()

    def request_view(self, identity: Identity, request_id: Any) -> RequestView:
        """:meth:`get_request` as a view."""
        view = self.workflow.get(parse_id(request_id, "request_id"))
        self.require(identity, "read", view.model, "read_request")
        return view

    def open_request(
        self, identity: Identity, model: Any, version: Any, target: Any, comment: Any = None
    ) -> dict[str, Any]:
        """Open (or reuse) a promotion request; the workflow checks ``request`` rights."""
        name = text_arg(model, "model", "a registered model name")
        where = text_arg(target, "target", "a stage (Production) or an alias (@champion)")
        view = self.workflow.open_request(
            identity,
            name,
            version_arg(version),
            Target.parse(where),
            comment=comment_arg(comment),
        )
        return view.to_dict()

    def vote(
        self, identity: Identity, request_id: Any, action: str, comment: Any = None
    ) -> dict[str, Any]:
        """Approve, reject or cancel a request (the workflow checks the caller's rights).

        Approving the last missing approval applies the move when the gate says
        ``automatic``; a move the gate still holds back is reported in ``apply_error``.
        """
        if action not in VOTES:
            raise InvalidRequest(f"Unknown action {action!r} (valid: {', '.join(VOTES)}).")
        number = parse_id(request_id, "request_id")
        note = comment_arg(comment)
        if action == "approve":
            return self.workflow.approve(identity, number, note).to_dict()
        if action == "reject":
            return self.workflow.reject(identity, number, note).to_dict()
        self.workflow.cancel(identity, number, note)
        # Read again once cancel's transaction has committed.
        return self.workflow.get(number).to_dict()

    def approve(self, identity: Identity, request_id: Any, comment: Any = None) -> dict[str, Any]:
        """Approve a request."""
        return self.vote(identity, request_id, "approve", comment)

    def reject(self, identity: Identity, request_id: Any, comment: Any = None) -> dict[str, Any]:
        """Reject a request."""
        return self.vote(identity, request_id, "reject", comment)

    def cancel(self, identity: Identity, request_id: Any, comment: Any = None) -> dict[str, Any]:
        """Cancel an open request (its requester or a policy admin)."""
        return self.vote(identity, request_id, "cancel", comment)

    def may_vote(self, identity: Identity, view: RequestView) -> bool:
        """Whether the caller is an approver of the request's gate (to show buttons).

        Separation of duties is the workflow's to check when the vote is cast.
        """
        if view.state != PENDING:
            return False
        policy = self.policy()
        gate = policy.gates.get(view.gate or "")
        if gate is None or not policy.enforcing:
            return gate is not None
        return bool(may_approve(policy, gate, view.model, self.subject(identity)).granted)
