"""What every action of the application service stands on: the store, the workflow, rights.

The service is the one place where a person's or a pipeline's action is decided. The
adapters (REST routes, the page, the local command line, ``GovernanceClient``) parse their
input, call one method with the caller's identity, and print or send back what it returns.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlflow_governance.exceptions import InvalidRequest
from mlflow_governance.identity import Identity
from mlflow_governance.inputs import MAX_VERSION, parse_id
from mlflow_governance.policy import Policy, Subject, authorize

if TYPE_CHECKING:
    from mlflow_governance.store import GovernedStore
    from mlflow_governance.workflow.promotion import Workflow


def parse_time(value: str | None, name: str) -> datetime | None:
    """Parse an ISO-8601 time (``Z`` or an offset allowed; naive means UTC).

    Raises:
        InvalidRequest: Not an ISO-8601 time.
    """
    from mlflow_governance.audit.chain import parse_time as parse_iso

    if value is None or not str(value).strip():
        return None
    try:
        return parse_iso(str(value))
    except (ValueError, OverflowError):  # OverflowError: a year beyond 9999 after the offset
        raise InvalidRequest(
            f"{name}={value!r} is not an ISO-8601 time; e.g. 2026-11-01T12:00:00Z or 2026-11-01."
        ) from None


def text_arg(value: Any, name: str, what: str) -> str:
    """A required non-empty string argument."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name} must be {what}.")
    return value


def comment_arg(value: Any) -> str | None:
    """An optional comment; empty means none."""
    if value is not None and not isinstance(value, str):
        raise InvalidRequest("comment must be a string.")
    return value or None


def version_arg(value: Any) -> int:
    """A model version number, bounded as MLflow's column is."""
    return parse_id(value, "version", maximum=MAX_VERSION)


class ServiceCore:
    """The store and workflow every action uses, and the caller's rights on them.

    Args:
        store: The governed registry store.
        workflow: Its approval workflow (one is made when omitted).
    """

    def __init__(self, store: GovernedStore, workflow: Workflow | None = None) -> None:
        if workflow is None:
            from mlflow_governance.workflow.promotion import Workflow

            workflow = Workflow(store)
        self.store = store
        self.workflow = workflow

    def policy(self) -> Policy:
        """The policy in force (re-read within seconds of a change, in every process)."""
        return self.workflow.policy()

    def subject(self, identity: Identity) -> Subject:
        """The caller as the policy sees them, in the active workspace."""
        return self.store.subject_of(identity)

    def may(self, identity: Identity, permission: str, model: str | None) -> bool:
        """Whether ``identity`` may ``permission`` on ``model`` (audit-only allows all)."""
        return not authorize(self.policy(), self.subject(identity), permission, model).refused

    def require(self, identity: Identity, permission: str, model: str | None, action: str) -> None:
        """Refuse, and audit the refusal, unless the policy grants ``permission``.

        Raises:
            PermissionDenied: Not granted in enforce mode.
        """
        self.store.require(identity, permission, model, action)
