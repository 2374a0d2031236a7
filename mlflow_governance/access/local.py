"""Local mode: the governance actions on a database this process opens itself.

For administrators and for development: whoever holds the database credentials can act
here under any name (identity source ``asserted``). People and pipelines use the
governance server instead (remote mode).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlflow_governance.identity import Identity, current_identity


def _plain(data: Any) -> Any:
    """The data as it would arrive over HTTP: times as text, tuples as lists."""
    return json.loads(json.dumps(data, default=str))


class LocalAccess:
    """Every governance action, run in this process on a governed store.

    Args:
        registry_uri: A ``governed+…`` registry URI.
        identity: Act as this identity instead of resolving it at each call.
        tracking_uri: The tracking URI (for run metrics the gates check).
    """

    remote = False

    def __init__(
        self,
        registry_uri: str,
        identity: Identity | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        from mlflow.exceptions import MlflowException

        from mlflow_governance.application import GovernanceService
        from mlflow_governance.entry import build_store
        from mlflow_governance.exceptions import ConfigurationError

        self.registry_uri = registry_uri
        try:
            self.store = build_store(registry_uri, tracking_uri)
        except MlflowException as exc:
            raise ConfigurationError(exc.message) from None
        self.service = GovernanceService(self.store)
        self._identity = identity

    @property
    def where(self) -> str:
        """The database, for messages (without its password)."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.registry_uri.split("+", 1)[1]).render_as_string(hide_password=True)
        except Exception:
            return self.registry_uri

    def who(self) -> Identity:
        """The actor of the next call."""
        return self._identity or current_identity()

    def notice(self) -> str | None:
        """A warning for this process, e.g. a policy file that differs from the applied one."""
        return self.service.policy_drift()

    # ------------------------------------------------------------------ requests

    def list_requests(self, state: str | None = None, model: str | None = None) -> Any:
        """Requests on models the caller may read, newest first."""
        return _plain(self.service.list_requests(self.who(), state, model))

    def get_request(self, request_id: int) -> Any:
        """One request."""
        return _plain(self.service.get_request(self.who(), request_id))

    def open_request(self, model: str, version: int, to: str, comment: str | None = None) -> Any:
        """Open (or reuse) a promotion request."""
        return _plain(self.service.open_request(self.who(), model, version, to, comment))

    def vote(self, request_id: int, action: str, comment: str | None = None) -> Any:
        """Approve, reject or cancel a request."""
        return _plain(self.service.vote(self.who(), request_id, action, comment))

    # ------------------------------------------------------------------ moves

    def check(self, model: str, version: int, gate: str) -> Any:
        """A gate's checks on a version."""
        return _plain(self.service.check(self.who(), model, version, gate))

    def promote(self, model: str, version: int, to: str, comment: str | None = None) -> Any:
        """Apply the move, or open (or reuse) its request."""
        return _plain(self.service.promote(self.who(), model, version, to, comment))

    def rollback(
        self,
        model: str,
        stage: str | None = None,
        alias: str | None = None,
        comment: str | None = None,
    ) -> Any:
        """Restore the previous holder of a stage or alias."""
        return _plain(self.service.rollback(self.who(), model, stage, alias, comment))

    # ------------------------------------------------------------------ audit

    def history(self, model: str, at: str | None = None) -> Any:
        """Stage and alias history."""
        return _plain(self.service.history(self.who(), model, at))

    def audit_list(self, args: Mapping[str, Any]) -> Any:
        """Audit rows."""
        return _plain(self.service.audit_list(self.who(), args))

    def audit_export(self, args: Mapping[str, Any]) -> Any:
        """Every matching audit row."""
        return _plain(self.service.audit_export(self.who(), args))

    def audit_verify(self, checkpoint: str | None = None) -> Any:
        """Verify the chain, against a checkpoint's text if given."""
        return _plain(self.service.audit_verify(self.who(), checkpoint))

    def audit_checkpoint(self) -> Any:
        """The chain head."""
        return _plain(self.service.audit_checkpoint(self.who()))

    def audit_reconcile(self) -> Any:
        """The registry against what the audit log says it is."""
        return _plain(self.service.audit_reconcile(self.who()))

    def audit_retain(self, before: str, archive: str) -> Any:
        """Archive the rows older than ``before`` to ``archive``, then cut them."""
        return _plain(self.service.audit_retain(self.who(), before, archive))

    # ------------------------------------------------------------------ events

    def events_list(self, state: str | None = None, limit: int | None = None) -> Any:
        """Outbox events, newest first."""
        return _plain(self.service.events_list(self.who(), state, limit))

    def events_retry(self, event: int | None = None, dead: bool = False) -> Any:
        """Make an event, or every dead one, due again."""
        return _plain(self.service.events_retry(self.who(), event, dead))

    def gitops_render(
        self,
        model: str,
        *,
        alias: str | None = None,
        stage: str | None = None,
        image: str | None = None,
    ) -> Any:
        """The manifests of the version a stage or alias holds now."""
        return _plain(
            self.service.render_release(self.who(), model, alias=alias, stage=stage, image=image)
        )

    # ------------------------------------------------------------------ policy and identity

    def policy_show(self) -> Any:
        """The policy in force and where it comes from."""
        return _plain(self.service.policy_show(self.who()))

    def policy_apply(self, text: str, source: str) -> Any:
        """Apply a policy text."""
        return _plain(self.service.policy_apply(self.who(), text, source))

    def policy_explain(self, user: str, model: str, groups: frozenset[str] = frozenset()) -> Any:
        """What ``user`` may do on ``model``."""
        return _plain(self.service.policy_explain(self.who(), user, model, sorted(groups)))

    def whoami(self) -> Any:
        """The identity this process asserts."""
        return _plain(self.service.whoami(self.who()))


__all__ = ["LocalAccess"]
