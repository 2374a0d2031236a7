"""Applying, showing and explaining policies kept in the database."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mlflow_governance.audit.refusal import refusal
from mlflow_governance.audit.writer import DECISION_ALLOW, AuditEntry, append
from mlflow_governance.clock import utc_now
from mlflow_governance.identity import Identity
from mlflow_governance.policy import (
    Subject,
    authorize,
    load_policy_text,
    permissions_of,
    roles_of,
)
from mlflow_governance.workflow.tables import policies

if TYPE_CHECKING:
    from mlflow_governance.workflow.registry import Registry


@dataclass(frozen=True)
class Applied:
    """The result of ``policy apply``."""

    id: int
    sha256: str
    changed: bool
    diff: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def apply_policy(store: Registry, identity: Identity, text: str, source: str) -> Applied:
    """Validate and store a policy as the newest applied one, audited with a diff.

    The first policy may be applied by anyone (the registry runs the audit-only default
    until then); after that, applying needs ``policy:admin`` under the policy in force.

    Raises:
        PolicyFileError: The text is not a valid policy (nothing is stored).
        PermissionDenied: The actor lacks ``policy:admin``.
    """
    new = load_policy_text(text, source=source)
    loaded = store.policies.current()
    if loaded is not None and loaded.policy.enforcing:
        decision = authorize(loaded.policy, store.subject_of(identity), "policy:admin", None)
        if not decision.granted:
            raise refusal(
                store.engine,
                identity,
                action="policy_apply",
                asked="policy:admin",
                resource="the policy",
                reason=decision.reason,
                rule=decision.rule,
                hint=decision.hint,
                details={"source": source},
            )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with store.engine.begin() as conn:
        previous = conn.execute(
            sa.select(policies.c.id, policies.c.content, policies.c.sha256)
            .order_by(policies.c.id.desc())
            .limit(1)
        ).first()
        if previous is not None and previous.sha256 == digest:
            return Applied(int(previous.id), digest, False, "")
        diff = "".join(
            difflib.unified_diff(
                (previous.content if previous else "").splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"applied policy #{previous.id}" if previous else "no policy",
                tofile=source,
            )
        )
        result = conn.execute(
            sa.insert(policies).values(
                content=text,
                sha256=digest,
                source=source[:512],
                applied_by=identity.user,
                applied_at=utc_now(),
            )
        )
        policy_id = _new_id(result)
        append(
            conn,
            [
                AuditEntry(
                    "policy_apply",
                    identity,
                    DECISION_ALLOW,
                    reason=f"policy #{policy_id} applied ({new.mode})",
                    rule="policy:admin",
                    details={
                        "policy_id": policy_id,
                        "sha256": digest,
                        "source": source,
                        "diff": diff,
                    },
                )
            ],
        )
    store.policies.invalidate()
    return Applied(policy_id, digest, True, diff)


def explain(store: Registry, user: str, model: str, groups: frozenset[str]) -> dict[str, Any]:
    """What ``user`` may do on ``model`` under the policy in force, and why.

    Returns:
        ``{"user", "model", "mode", "origin", "roles": [...], "permissions": [...],
        "gates": [...]}``.
    """
    loaded = store.policies.current()
    if loaded is None:
        return {
            "user": user,
            "model": model,
            "mode": "audit-only",
            "origin": "default",
            "roles": [],
            "permissions": [],
            "gates": [],
            "note": "No policy configured: nothing is refused, everything is recorded.",
        }
    policy = loaded.policy
    subject = Subject(user, groups)
    gates = []
    for gate in policy.gates.values():
        if not gate.model_globs.match(model):
            continue
        gates.append(
            {
                "gate": gate.name,
                "stages": list(gate.targets.stages),
                "aliases": list(gate.targets.aliases),
                "approvals_required": gate.approvals.required,
                "may_approve": bool(
                    authorize(policy, subject, f"approve:{gate.name}", model).granted
                    or _holds(policy, subject, model, gate.approvals.approver_roles)
                ),
                "may_break_glass": _holds(policy, subject, model, gate.break_glass_roles),
            }
        )
    return {
        "user": user,
        "model": model,
        "mode": policy.mode,
        "origin": loaded.origin,
        "roles": [{"role": g.permission, "rule": g.rule} for g in roles_of(policy, subject, model)],
        "permissions": [
            {"permission": g.permission, "rule": g.rule}
            for g in permissions_of(policy, subject, model)
        ],
        "gates": gates,
    }


def _holds(policy: Any, subject: Subject, model: str, roles: tuple[str, ...]) -> bool:
    held = {g.permission for g in roles_of(policy, subject, model)}
    return bool(held.intersection(roles))


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has it
    return int(key[0])
