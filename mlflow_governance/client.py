"""``GovernanceClient``: the Python API of the approval workflow, for notebooks and CI.

It reaches the governance service as the command line does: the governance server when
the URI is ``http(s)://…`` (remote mode, recommended: the server authenticates you with
MLflow's client credentials), or the database for a ``governed+…`` registry URI (local
mode: you act as ``MLFLOW_TRACKING_USERNAME`` or the OS login). Methods return plain
dictionaries in the shapes of the CLI's ``--json`` and the REST API, the same in both
modes. Errors are ``MlflowException`` with MLflow's error codes, as from ``MlflowClient``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from mlflow_governance.exceptions import GovernanceError
from mlflow_governance.identity import Identity


@contextmanager
def _mlflow_errors() -> Iterator[None]:
    from mlflow_governance.mlflow_errors import to_mlflow

    try:
        yield
    except GovernanceError as exc:
        raise to_mlflow(exc) from None


class GovernanceClient:
    """Requests, approvals, checks, promotions, rollbacks, the audit log and the policy.

    Args:
        registry_uri: A governance server (``http(s)://…``) or a governed registry
            (``governed+…``). Defaults as the command line's: ``MLFLOW_REGISTRY_URI``, else
            ``MLFLOW_TRACKING_URI`` when it names a server.
        identity: Local mode only: act as this identity instead of resolving it per call.
        tracking_uri: A governance server's URL (used when ``registry_uri`` is not given).
    """

    def __init__(
        self,
        registry_uri: str | None = None,
        identity: Identity | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        from mlflow_governance.access import connect

        with _mlflow_errors():
            self._access = connect(registry_uri, tracking_uri, identity)
            notice = self._access.notice()
        if notice:
            from mlflow_governance.exceptions import GovernanceWarning

            warnings.warn(notice, GovernanceWarning, stacklevel=2)

    @property
    def remote(self) -> bool:
        """Whether calls go to a governance server."""
        return self._access.remote

    @property
    def store(self) -> Any:
        """Local mode: the governed store (for administration scripts).

        Raises:
            MlflowException: In remote mode, where there is no store here.
        """
        store = getattr(self._access, "store", None)
        if store is None:
            with _mlflow_errors():
                from mlflow_governance.exceptions import InvalidRequest

                raise InvalidRequest("A remote GovernanceClient has no store: it talks HTTP.")
        return store

    def _run(self, call: Callable[[], Any]) -> Any:
        with _mlflow_errors():
            return call()

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
        return self._run(lambda: self._access.open_request(name, int(version), to, comment))

    def approve(self, request_id: int, comment: str | None = None) -> dict[str, Any]:
        """Approve a request (the last approval applies it when the gate says automatic)."""
        return self._run(lambda: self._access.vote(int(request_id), "approve", comment))

    def reject(self, request_id: int, comment: str | None = None) -> dict[str, Any]:
        """Reject a request."""
        return self._run(lambda: self._access.vote(int(request_id), "reject", comment))

    def cancel(self, request_id: int, comment: str | None = None) -> dict[str, Any]:
        """Cancel an open request (its requester or a policy admin)."""
        return self._run(lambda: self._access.vote(int(request_id), "cancel", comment))

    def get_request(self, request_id: int) -> dict[str, Any]:
        """One request (``read`` on its model needed)."""
        return self._run(lambda: self._access.get_request(int(request_id)))

    def requests(self, state: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
        """Requests on models the caller may read, newest first, optionally filtered."""
        return self._run(lambda: self._access.list_requests(state, model))

    # ------------------------------------------------------------------ gates and moves

    def check(self, name: str, version: int | str, gate: str) -> dict[str, Any]:
        """Evaluate everything ``gate`` requires of a version except approvals.

        Returns:
            ``{"passed": bool, "gate": ..., "checks": [{"name", "passed", "expected",
            "actual"}, ...]}``.
        """
        return self._run(lambda: self._access.check(name, int(version), gate))

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
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Move a version to a stage or alias, through its gate.

        Without a gate the move is made at once (given the permission). Behind a gate, an
        approved request for exactly this move is applied; otherwise a request is opened
        (or reused) and, with ``wait``, this call polls until it is applied, closed or the
        timeout passes. The server never waits.

        Returns:
            ``{"status": "applied"|"pending"|..., "request": {...} | None,
            "review_request": {...} | None}``.

        Raises:
            MlflowException: Refused, or (with ``wait``) the request was closed or the
                timeout passed (``RESOURCE_CONFLICT``).
        """
        from mlflow_governance.access.waiting import wait_for_promotion

        number = int(version)

        def run() -> Any:
            result = self._access.promote(name, number, to, comment)
            if not wait or result["status"] == "applied":
                return result
            return wait_for_promotion(
                self._access,
                result,
                model=name,
                version=number,
                to=to,
                timeout=timeout,
                poll_interval=poll_interval,
                progress=progress,
            )

        return self._run(run)

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
            ``{"status": "applied"|"requested", "version": V, "request": {...} | None,
            "review_request": {...} | None}``.
        """
        return self._run(lambda: self._access.rollback(name, stage, alias, comment))

    # ------------------------------------------------------------------ policy and audit

    def apply_policy(self, path: str | Path) -> dict[str, Any]:
        """Validate a policy file and make it the applied policy (needs ``policy:admin``)."""
        from mlflow_governance.policy import read_policy_file

        return self._run(lambda: self._access.policy_apply(read_policy_file(str(path)), str(path)))

    def show_policy(self) -> dict[str, Any]:
        """The policy in force and where it comes from (``source``)."""
        return self._run(self._access.policy_show)

    def explain(
        self, user: str, model: str, groups: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """What ``user`` may do on ``model`` and which rule grants it."""
        return self._run(lambda: self._access.policy_explain(user, model, frozenset(groups)))

    def history(self, name: str, at: str | None = None) -> list[dict[str, Any]]:
        """Every stage and alias change of a model, oldest first (needs ``audit:read``)."""
        return self._run(lambda: self._access.history(name, at))

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """Audit rows (filters as ``audit list``: model, version, actor, action, ...)."""
        return self._run(lambda: self._access.audit_list(filters))

    def verify(self, checkpoint: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Verify the audit chain, against a checkpoint when given."""
        import json

        text = json.dumps(dict(checkpoint)) if checkpoint is not None else None
        return self._run(lambda: self._access.audit_verify(text))

    def events(self, state: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Outbox events, newest first (needs ``audit:read`` on every model)."""
        return self._run(lambda: self._access.events_list(state, limit))

    def retry_events(self, event_id: int | None = None, dead: bool = False) -> dict[str, Any]:
        """Make one event, or every dead one, due again (needs ``policy:admin``)."""
        return self._run(lambda: self._access.events_retry(event_id, dead))

    def render_manifests(
        self,
        name: str,
        *,
        alias: str | None = None,
        stage: str | None = None,
        image: str | None = None,
    ) -> dict[str, Any]:
        """The Kubernetes manifests of the version a stage or alias holds now.

        Returns:
            ``{"model", "version", "target", "request_id", "approvers", "files"}``, the
            files as text by name (write them with ``mlflow_governance.gitops``'s
            ``write_files`` or your own code).
        """
        return self._run(
            lambda: self._access.gitops_render(name, alias=alias, stage=stage, image=image)
        )

    def whoami(self) -> dict[str, Any]:
        """Who the calls are recorded as (remotely: as the server authenticated you)."""
        return self._run(self._access.whoami)


__all__ = ["GovernanceClient", "MlflowException"]
