"""Messages that tell the person refused what is true and what to do next."""

from __future__ import annotations

from mlflow_governance.workflow import request_rows as rq
from mlflow_governance.workflow.tables import APPROVED

# A break-glass move has happened already; its review stays open until approvers approve
# it, so neither rejecting nor cancelling (nor expiry) may close it quietly.
REVIEW_STAYS = (
    "Request #{id} is the post-hoc review of a break-glass move made already: it stays "
    "pending until approved, and cannot be rejected or cancelled. To undo the move, roll "
    "it back: mlflow-governance rollback {model} --stage STAGE|--alias ALIAS."
)


def not_pending(view: rq.RequestView) -> str:
    """Why a vote on a request that is no longer pending is refused, and what to do."""
    if view.state == APPROVED:
        return (
            f"Request #{view.id} is already approved: apply it with "
            f"'mlflow-governance promote {view.model} {view.version} --to {view.target}'."
        )
    return (
        f"Request #{view.id} is already {view.state}: votes are closed. To make this move, "
        f"open a new request: 'mlflow-governance request {view.model} {view.version} "
        f"--to {view.target}'."
    )


def gate_gone(view: rq.RequestView, origin: str | None) -> str:
    """Why a request's gate is missing, and what to do, true here as elsewhere.

    The usual cause is two processes enforcing different policies (one with a file in
    ``MLFLOW_GOVERNANCE_POLICY``, one with the applied policy), not a removed gate.

    Args:
        view: The request.
        origin: Where the policy in force here comes from (``file:PATH``,
            ``database:ID``), or None for the built-in default.
    """
    if origin is None:
        here = "the built-in audit-only default (no policy file, no applied policy)"
    elif origin.startswith("file:"):
        here = f"the file {origin[len('file:') :]} (MLFLOW_GOVERNANCE_POLICY)"
    else:
        here = f"applied policy #{origin.partition(':')[2]}"
    return (
        f"Request #{view.id} names gate '{view.gate}', which the policy in force here, "
        f"{here}, does not have. If the gate is in the policy another process enforces "
        "(a governance server started with MLFLOW_GOVERNANCE_POLICY, say), act through "
        "that server (--tracking-uri) or apply the same policy here with "
        "'mlflow-governance policy apply FILE'. If the gate was removed on purpose, "
        f"the requester ({view.requester}) or a policy admin can cancel the request."
    )
