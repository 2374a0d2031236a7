"""``GovernanceClient``: the Python API of the approval workflow, for notebooks and CI.

Every method acts as the current identity (``MLFLOW_TRACKING_USERNAME`` or the OS login in
local mode) and returns plain dictionaries in the shapes the CLI's ``--json`` and the REST
API use. Errors are ``MlflowException`` with MLflow's error codes, as from ``MlflowClient``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException

from mlflow_governance.exceptions import Conflict, GovernanceError, InvalidRequest
from mlflow_governance.identity import Identity, current_identity
from mlflow_governance.mlflow_errors import to_mlflow
from mlflow_governance.workflow.request_rows import Target
from mlflow_governance.workflow.tables import APPLIED, APPROVED, OPEN_STATES

T = TypeVar("T")


@contextmanager
def _mlflow_errors() -> Iterator[None]:
    try:
        yield
    except GovernanceError as exc:
        raise to_mlflow(exc) from None


class GovernanceClient:
    """Requests, approvals, checks, promotions, rollbacks and policies of a governed registry.

    Args:
        registry_uri: A ``governed+…`` URI; defaults to MLflow's registry URI
            (``MLFLOW_REGISTRY_URI`` or ``mlflow.set_registry_uri``).
        identity: Act as this identity instead of resolving it per call.
    """

    def __init__(self, registry_uri: str | None = None, identity: Identity | None = None) -> None:
        from mlflow.tracking._model_registry.utils import get_registry_uri

        from mlflow_governance.entry import build_store
        from mlflow_governance.workflow.promotion import Workflow

        uri = registry_uri or get_registry_uri()
        self.store = build_store(uri)
        self.workflow = Workflow(self.store)
        self._identity = identity

    def _who(self) -> Identity:
        return self._identity or current_identity()

    def _run(self, fn: Callable[[], T]) -> T:
        with _mlflow_errors():
            return fn()

    def _may(self, identity: Identity, permission: str, model: str | None) -> bool:
        from mlflow_governance.policy import Subject, authorize

        subject = Subject(identity.user, identity.groups)
        return not authorize(self.workflow.policy(), subject, permission, model).refused

    def _require(self, identity: Identity, permission: str, model: str, action: str) -> None:
        """Refuse (and audit the refusal) unless the policy grants ``permission`` on ``model``.

        Reading requests needs ``read`` on their model and the history needs ``audit:read``,
        as through the governance server: the command line shows no more than the REST API.
        """
        self.store.require(identity, permission, model, action)

    # ------------------------------------------------------------------ requests

    def request(
        self, name: str, version: int | str, to: str, comment: str | None = None
    ) -> dict[str, Any]:
        """Open (or reuse) a promotion request moving ``name`` ``version`` to ``to``.

        Args:
            name: Registered model name.
            version: Version number.
            to: A stage (``Production``) or an alias (``@champion``).
            comment: Why.
        """
        return self._run(
            lambda: self.workflow.open_request(
                self._who(), name, int(version), Target.parse(to), comment=comment
            ).to_dict()
        )

    def approve(self, request_id: int, comment: str | None = None) -> dict[str, Any]:
        """Approve a request (the last approval applies it when the gate says automatic)."""
        return self._run(
            lambda: self.workflow.approve(self._who(), int(request_id), comment).to_dict()
        )

    def reject(self, request_id: int, comment: str | None = None) -> dict[str, Any]:
        """Reject a request."""
        return self._run(
            lambda: self.workflow.reject(self._who(), int(request_id), comment).to_dict()
        )

    def cancel(self, request_id: int, comment: str | None = None) -> dict[str, Any]:
        """Cancel an open request (its requester or a policy admin)."""
        return self._run(
            lambda: self.workflow.cancel(self._who(), int(request_id), comment).to_dict()
        )

    def get_request(self, request_id: int) -> dict[str, Any]:
        """One request (``read`` on its model needed)."""

        def run() -> dict[str, Any]:
            view = self.workflow.get(int(request_id))
            self._require(self._who(), "read", view.model, "read_request")
            return view.to_dict()

        return self._run(run)

    def requests(self, state: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
        """Requests on models the caller may read, newest first, optionally filtered."""

        def run() -> list[dict[str, Any]]:
            identity = self._who()
            readable: dict[str, bool] = {}
            shown = []
            for view in self.workflow.list(state=state, model=model):
                if view.model not in readable:
                    readable[view.model] = self._may(identity, "read", view.model)
                if readable[view.model]:
                    shown.append(view.to_dict())
            return shown

        return self._run(run)

    # ------------------------------------------------------------------ gates and moves

    def check(self, name: str, version: int | str, gate: str) -> dict[str, Any]:
        """Evaluate everything ``gate`` requires of a version except approvals.

        Returns:
            ``{"passed": bool, "gate": ..., "checks": [{"name", "passed", "expected",
            "actual"}, ...]}``.
        """

        def run() -> dict[str, Any]:
            who = self._who()
            self._require(who, "read", name, "check_gate")
            status = self.workflow.check(name, int(version), gate, actor=who.user)
            checks = [
                dict(c._asdict()) if hasattr(c, "_asdict") else dict(c.__dict__)
                for c in status.checks
            ]
            return {
                "model": name,
                "version": int(version),
                "gate": gate,
                "passed": not status.failed_checks,
                "checks": checks,
            }

        return self._run(run)

    def promote(
        self,
        name: str,
        version: int | str,
        to: str,
        *,
        wait: bool = False,
        timeout: float = 600.0,
        poll_interval: float = 2.0,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """Move a version to a stage or alias, through its gate.

        Without a gate the move is made at once (given the permission). Behind a gate, an
        approved request for exactly this move is applied; otherwise a request is opened
        (or reused) and, with ``wait``, the call polls until it is applied, closed or the
        timeout passes.

        Returns:
            ``{"status": "applied"|"pending"|..., "request": {...} | None}``.

        Raises:
            MlflowException: Refused, or (with ``wait``) the request was closed or the
                timeout passed (``RESOURCE_CONFLICT``).
        """
        target = Target.parse(to)
        identity = self._who()

        def attempt() -> dict[str, Any]:
            from mlflow_governance.policy import Subject, may_break_glass
            from mlflow_governance.workflow.moves import Move

            policy = self.workflow.policy()
            gates = self.workflow._gates(policy, name, target)
            subject = Subject(identity.user, identity.groups)
            if (
                not gates
                or all(gate.required_approvals() == 0 for gate in gates)
                or all(may_break_glass(policy, gate, name, subject).granted for gate in gates)
            ):
                # Nothing to wait for (no gate, no approvals needed, or a break-glass role):
                # the gate decides on the move itself, as for the stock client's call. An
                # approved request for the move is applied there too.
                self.store.governed_move(identity, Move(name, int(version), target))
                return {"status": APPLIED, "request": None}
            view = self.workflow.open_request(identity, name, int(version), target, comment=comment)
            if view.state == APPROVED:
                view = self.workflow.apply(identity, view.id)
            return {"status": view.state, "request": view.to_dict()}

        result = self._run(attempt)
        deadline = time.monotonic() + timeout
        while wait and result["status"] != APPLIED:
            request = result["request"]
            if request is None or request["state"] not in OPEN_STATES:
                raise to_mlflow(
                    Conflict(
                        f"Request #{request['id'] if request else '?'} is "
                        f"{request['state'] if request else 'gone'}; the promotion did not happen."
                    )
                )
            if time.monotonic() >= deadline:
                raise to_mlflow(
                    Conflict(
                        f"Timed out after {timeout:g}s waiting for request #{request['id']} "
                        f"({request.get('needs') or request['state']})."
                    )
                )
            time.sleep(poll_interval)
            result = self._run(partial(self._poll, identity, int(request["id"])))
        return result

    def _poll(self, identity: Identity, request_id: int) -> dict[str, Any]:
        view = self.workflow.get(request_id)
        if view.state == APPROVED:
            view = self.workflow.apply(identity, view.id)
        return {"status": view.state, "request": view.to_dict()}

    def rollback(
        self,
        name: str,
        *,
        stage: str | None = None,
        alias: str | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """Restore the version that held a stage or alias before its current holder.

        Returns:
            ``{"status": "applied"|"requested", "version": V, "request": {...} | None}``.
        """
        if (stage is None) == (alias is None):
            raise to_mlflow(InvalidRequest("Give exactly one of stage or alias to roll back."))
        target = Target.parse(stage) if stage is not None else Target("alias", str(alias))

        def run() -> dict[str, Any]:
            status, view, version = self.workflow.rollback(self._who(), name, target, comment)
            return {
                "status": status,
                "model": name,
                "target": str(target),
                "version": version,
                "request": view.to_dict() if view else None,
            }

        return self._run(run)

    # ------------------------------------------------------------------ policy and audit

    def apply_policy(self, path: str | Path) -> dict[str, Any]:
        """Validate a policy file and make it the applied policy (needs ``policy:admin``)."""
        from mlflow_governance.policy import read_policy_file
        from mlflow_governance.workflow.policies import apply_policy

        def run() -> dict[str, Any]:
            # The loader's size budget holds for the text that is stored, too.
            text = read_policy_file(str(path))
            return apply_policy(self.store, self._who(), text, str(path)).to_dict()

        return self._run(run)

    def explain(
        self, user: str, model: str, groups: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """What ``user`` may do on ``model`` and which rule grants it."""
        from mlflow_governance.workflow.policies import explain

        return self._run(lambda: explain(self.store, user, model, groups))

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every stage and alias change of a model, oldest first (needs ``audit:read``)."""
        from mlflow_governance.audit.query import history

        def run() -> list[dict[str, Any]]:
            self._require(self._who(), "audit:read", name, "read_history")
            with self.store.engine.connect() as conn:
                return [
                    e.to_dict()
                    for e in history(conn, name, workspace=self.store.active_workspace())
                ]

        return self._run(run)


__all__ = ["GovernanceClient", "MlflowException"]
