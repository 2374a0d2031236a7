"""The application layer: every action a person or a pipeline takes, decided once.

:class:`GovernanceService` has one method per action (requests and votes, checks,
promotions and rollbacks, the audit log and history, the policy, whoami). Each takes the
caller's :class:`~mlflow_governance.identity.Identity`, returns JSON-ready data in the
shapes of the CLI's ``--json`` and the REST API, and raises
:class:`~mlflow_governance.exceptions.GovernanceError`. The REST routes, the approval
page, the local command line and ``GovernanceClient`` are adapters over it.
"""

from __future__ import annotations

from mlflow_governance.application.approvals import ApprovalActions
from mlflow_governance.application.audit import AuditActions, export_text
from mlflow_governance.application.events import EventActions
from mlflow_governance.application.gitops import GitOpsActions
from mlflow_governance.application.moves import MoveActions
from mlflow_governance.application.policies import PolicyActions
from mlflow_governance.application.reconcile import ReconcileActions
from mlflow_governance.application.retention import RetentionActions


class GovernanceService(
    ApprovalActions,
    MoveActions,
    AuditActions,
    ReconcileActions,
    RetentionActions,
    PolicyActions,
    EventActions,
    GitOpsActions,
):
    """Every governance action on one governed store.

    Args:
        store: The governed registry store.
        workflow: Its approval workflow (made when omitted).
    """


__all__ = ["GovernanceService", "export_text"]
