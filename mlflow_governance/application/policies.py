"""The policy in force (where it comes from, applying, explaining) and who the caller is."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mlflow_governance import config
from mlflow_governance.application._core import ServiceCore, text_arg
from mlflow_governance.exceptions import InvalidRequest
from mlflow_governance.identity import Identity
from mlflow_governance.policy import authorize, effective_groups, policy_to_dict

_DEFAULT_POLICY = {"version": 1, "mode": "audit-only"}


def _file_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


class PolicyActions(ServiceCore):
    """``policy show``, ``apply`` and ``explain``, and ``whoami``."""

    def _newest_applied(self) -> tuple[int, str] | None:
        from mlflow_governance.workflow.tables import policies

        with self.store.engine.connect() as conn:
            row = conn.execute(
                sa.select(policies.c.id, policies.c.sha256).order_by(policies.c.id.desc()).limit(1)
            ).first()
        return None if row is None else (int(row.id), str(row.sha256))

    def policy_source(self) -> dict[str, Any]:
        """Where the policy in force comes from.

        Returns:
            ``{"kind": "file"|"applied"|"default", "path", "sha256", "version"}``: a file
            named by ``MLFLOW_GOVERNANCE_POLICY`` with its digest, or the applied policy's
            number (``version``) and digest, or the built-in default.
        """
        loaded = self.store.policies.current()
        if loaded is None:
            return {"kind": "default", "path": None, "sha256": None, "version": None}
        if loaded.origin.startswith("file:"):
            path = loaded.origin[len("file:") :]
            return {"kind": "file", "path": path, "sha256": _file_digest(path), "version": None}
        newest = self._newest_applied()
        number = int(loaded.origin.partition(":")[2])
        digest = newest[1] if newest is not None and newest[0] == number else None
        if digest is None:
            from mlflow_governance.workflow.tables import policies

            with self.store.engine.connect() as conn:
                digest = conn.execute(
                    sa.select(policies.c.sha256).where(policies.c.id == number)
                ).scalar()
        return {"kind": "applied", "path": None, "sha256": digest, "version": number}

    def policy_drift(self) -> str | None:
        """Why this process may enforce another policy than the registry's applied one.

        Returns:
            A sentence when ``MLFLOW_GOVERNANCE_POLICY`` names a file whose content is not
            the newest applied policy, else None.
        """
        path = config.policy_file()
        if not path:
            return None
        newest = self._newest_applied()
        if newest is None:
            return None
        if _file_digest(path) == newest[1]:
            return None
        return (
            f"{config.ENV_POLICY}={path} is in force in this process, but the registry's "
            f"newest applied policy is #{newest[0]} (sha256 {newest[1][:12]}), which differs: "
            "processes without that setting (the governance server, other shells) enforce "
            f"#{newest[0]}. Apply the file with 'mlflow-governance policy apply {path}', or "
            "unset the setting."
        )

    def policy_show(self, identity: Identity) -> dict[str, Any]:
        """The policy in force and where it comes from.

        Any caller may read the rules they are held to; notification targets (webhook
        URLs, queues) are shown only to holders of ``policy:admin``.
        """
        source = self.policy_source()
        loaded = self.store.policies.current()
        if loaded is None:
            return {
                "origin": "default",
                "mode": "audit-only",
                "source": source,
                "policy": dict(_DEFAULT_POLICY),
            }
        data = policy_to_dict(loaded.policy)
        admin = authorize(loaded.policy, self.subject(identity), "policy:admin", None).granted
        if not admin:
            data["notifications"] = [
                {"type": n["type"], "events": n.get("events", [])} for n in data["notifications"]
            ]
        return {
            "origin": loaded.origin,
            "mode": loaded.policy.mode,
            "source": source,
            "policy": data,
        }

    def policy_apply(self, identity: Identity, text: Any, source: Any) -> dict[str, Any]:
        """Validate a policy text and make it the applied policy (needs ``policy:admin``).

        Returns:
            ``{"id", "sha256", "changed", "diff", "overridden_by"}``: ``overridden_by``
            names the file that this process enforces instead (``MLFLOW_GOVERNANCE_POLICY``).

        Raises:
            PolicyFileError: Invalid; nothing is stored.
            PermissionDenied: The caller lacks ``policy:admin``.
        """
        from mlflow_governance.exceptions import PolicyFileError, PolicyIssue
        from mlflow_governance.policy._budget import text_size_problem
        from mlflow_governance.workflow.policies import apply_policy

        body = text_arg(text, "policy", "the policy file's YAML text")
        origin = text_arg(source, "source", "the policy file's name")
        problem = text_size_problem(len(body.encode("utf-8")))
        if problem is not None:  # the loader's budget holds for text sent over HTTP too
            raise PolicyFileError([PolicyIssue(origin, 0, 0, "(file)", problem)])
        result = apply_policy(self.store, identity, body, origin).to_dict()
        result["overridden_by"] = config.policy_file()
        return result

    def policy_explain(
        self, identity: Identity, user: Any, model: Any, groups: Any = ()
    ) -> dict[str, Any]:
        """What ``user`` may do on ``model`` and which rule grants each permission."""
        from mlflow_governance.workflow.policies import explain

        who = text_arg(user, "user", "a user name")
        name = text_arg(model, "model", "a registered model name")
        if isinstance(groups, str) or not all(isinstance(g, str) for g in groups or ()):
            raise InvalidRequest("groups must be a list of group names.")
        return explain(self.store, who, name, frozenset(groups or ()))

    def whoami(self, identity: Identity) -> dict[str, Any]:
        """The caller as the policy sees them: name, groups and how the name is known."""
        groups = effective_groups(self.policy(), self.subject(identity))
        return {
            "user": identity.user,
            "groups": sorted(groups),
            "identity_source": identity.source,
        }
