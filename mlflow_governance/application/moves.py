"""Gate checks, promotions and rollbacks: the steps a pipeline takes."""

from __future__ import annotations

from typing import Any

from mlflow_governance.application._core import ServiceCore, comment_arg, text_arg, version_arg
from mlflow_governance.exceptions import InvalidRequest
from mlflow_governance.identity import Identity
from mlflow_governance.policy import may_break_glass
from mlflow_governance.workflow.moves import Move
from mlflow_governance.workflow.request_rows import ALIAS, RequestView, Target
from mlflow_governance.workflow.tables import APPLIED, APPROVED, KIND_REVIEW, PENDING


def _check_dict(check: Any) -> dict[str, Any]:
    data = check._asdict() if hasattr(check, "_asdict") else dict(check.__dict__)
    return {key: value for key, value in data.items() if not key.startswith("_")}


class MoveActions(ServiceCore):
    """``check``, ``promote`` and ``rollback``."""

    def check(self, identity: Identity, model: Any, version: Any, gate: Any) -> dict[str, Any]:
        """Evaluate everything ``gate`` requires of a version except approvals.

        Returns:
            ``{"model", "version", "gate", "passed", "checks": [{"name", "passed",
            "expected", "actual"}, ...]}``.

        Raises:
            InvalidRequest: No such gate.
            NotFound: No such version.
        """
        name = text_arg(model, "model", "a registered model name")
        number = version_arg(version)
        gate_name = text_arg(gate, "gate", "the name of a gate of the policy")
        self.require(identity, "read", name, "check_gate")
        status = self.workflow.check(name, number, gate_name, actor=identity.user)
        return {
            "model": name,
            "version": number,
            "gate": gate_name,
            "passed": not status.failed_checks,
            "checks": [_check_dict(c) for c in status.checks],
        }

    def promote(
        self, identity: Identity, model: Any, version: Any, to: Any, comment: Any = None
    ) -> dict[str, Any]:
        """Move a version to a stage or alias through its gate, once; never waits.

        Without a gate, with a gate that wants no approvals, or for a break-glass role, the
        move is made at once (the gate decides on the move itself). Behind approvals, an
        approved request for exactly this move is applied; otherwise the request is opened
        (or the open one returned) and the result says what it still needs.

        Returns:
            ``{"status": "applied"|"pending"|"approved", "model", "version", "target",
            "request": {...}|None, "review_request": {...}|None}``: ``review_request`` is
            the post-hoc review a break-glass move opened.
        """
        name = text_arg(model, "model", "a registered model name")
        number = version_arg(version)
        target = Target.parse(text_arg(to, "to", "a stage (Production) or an alias (@champion)"))
        note = comment_arg(comment)
        if self._holds(identity, name, number, target):
            # Already there: a re-run pipeline step succeeds without a new request.
            return {
                "model": name,
                "version": number,
                "target": str(target),
                "request": None,
                "review_request": None,
                "status": APPLIED,
            }
        policy = self.policy()
        gates = self.workflow._gates(policy, name, target)
        subject = self.subject(identity)
        result: dict[str, Any] = {
            "model": name,
            "version": number,
            "target": str(target),
            "request": None,
            "review_request": None,
        }
        if (
            not gates
            or all(gate.required_approvals() == 0 for gate in gates)
            or all(may_break_glass(policy, gate, name, subject).granted for gate in gates)
        ):
            self.store.governed_move(
                identity, Move(name, number, target, notes={"comment": note} if note else {})
            )
            review = self._review_of(name, number, target)
            return {**result, "status": APPLIED, "review_request": review}
        view = self.workflow.open_request(identity, name, number, target, comment=note)
        if view.state == APPROVED:
            view = self.workflow.apply(identity, view.id)
        return {**result, "status": view.state, "request": view.to_dict()}

    def rollback(
        self,
        identity: Identity,
        model: Any,
        stage: Any = None,
        alias: Any = None,
        comment: Any = None,
    ) -> dict[str, Any]:
        """Restore the version that held a stage or alias before its current holder.

        Returns:
            ``{"status": "applied"|"requested", "model", "target", "version",
            "request": {...}|None, "review_request": {...}|None}``.

        Raises:
            InvalidRequest: Not exactly one of stage and alias.
            Conflict: The audit log shows no earlier holder that still exists.
        """
        name = text_arg(model, "model", "a registered model name")
        if (stage is None) == (alias is None):
            raise InvalidRequest("Give exactly one of stage or alias to roll back.")
        if stage is not None:
            target = Target.parse(text_arg(stage, "stage", "a stage name"))
        else:
            target = Target(ALIAS, text_arg(alias, "alias", "an alias name").lstrip("@"))
        status, view, version = self.workflow.rollback(identity, name, target, comment_arg(comment))
        review = self._review_of(name, version, target) if view is None else None
        return {
            "status": status,
            "model": name,
            "target": str(target),
            "version": version,
            "request": view.to_dict() if view else None,
            "review_request": review,
        }

    def _holds(self, identity: Identity, model: str, version: int, target: Target) -> bool:
        """Whether the version is at ``target`` already (told only to those who may read)."""
        from mlflow.exceptions import MlflowException

        if not self.may(identity, "read", model):
            return False
        try:
            mv = self.store.raw_version(model, version)
        except MlflowException:  # missing: the move itself says so, as before
            return False
        if target.kind == ALIAS:
            return target.name in (mv.aliases or [])
        return bool(mv.current_stage == target.name)

    def _review_of(self, model: str, version: int, target: Target) -> dict[str, Any] | None:
        """The newest open post-hoc review of this very move, if a break glass opened one."""
        reviews: list[RequestView] = [
            view
            for view in self.workflow.list(state=PENDING, model=model)
            if view.kind == KIND_REVIEW and view.version == version and view.target == target
        ]
        return max(reviews, key=lambda view: view.id).to_dict() if reviews else None
