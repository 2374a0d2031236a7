"""Which governance events an audit row stands for, and what they carry (SPEC section 8).

Events are derived from the audit rows as they are appended, in the same transaction, so
every change that is recorded is also announced, and nothing that rolled back is. A
refusal is announced as ``access.denied`` and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

REGISTERED = "model_version.registered"
TRANSITIONED = "model_version.transitioned"
ALIAS_SET = "alias.set"
ALIAS_DELETED = "alias.deleted"
REQUESTED = "promotion.requested"
APPROVED = "promotion.approved"
REJECTED = "promotion.rejected"
APPLIED = "promotion.applied"
POLICY_APPLIED = "policy.applied"
DENIED = "access.denied"

#: Audit actions (allowed) and the event each announces.
_BY_ACTION: dict[str, str] = {
    "create_model_version": REGISTERED,
    "transition_model_version_stage": TRANSITIONED,
    "set_registered_model_alias": ALIAS_SET,
    "delete_registered_model_alias": ALIAS_DELETED,
    "request_promotion": REQUESTED,
    "approve_request": APPROVED,
    "reject_request": REJECTED,
    "policy_apply": POLICY_APPLIED,
}
#: Moves that apply a request when the audit row names one.
_MOVES = ("transition_model_version_stage", "set_registered_model_alias")


def event_id(audit_hash: str, event_type: str) -> str:
    """A stable id: the same audit row and type always give the same id."""
    return hashlib.sha256(f"{audit_hash}:{event_type}".encode()).hexdigest()[:32]


def _details(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row.get("details")
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _from_to(row: Mapping[str, Any], details: Mapping[str, Any]) -> tuple[Any, Any]:
    if row.get("alias"):
        return row.get("alias_before"), row.get("alias_after")
    if row.get("stage_before") is not None or row.get("stage_after") is not None:
        return row.get("stage_before"), row.get("stage_after")
    return None, details.get("target")


def events_of(row: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The events an appended audit row announces: ``(type, data)`` pairs, possibly none.

    Args:
        row: The audit row as appended (columns; ``details`` as JSON text or a mapping).
    """
    decision = row.get("decision")
    details = _details(row)
    before, after = _from_to(row, details)
    data: dict[str, Any] = {
        "actor": row.get("actor"),
        "identity_source": row.get("identity_source"),
        "model": row.get("model"),
        "version": row.get("version"),
        "from": before,
        "to": after,
        "request_id": row.get("request_id"),
        "audit_id": row.get("id"),
        "workspace": row.get("workspace"),
    }
    if row.get("alias"):
        data["alias"] = row.get("alias")
    if decision == "deny":
        return [(DENIED, {**data, "action": row.get("action"), "reason": row.get("reason")})]
    action = str(row.get("action") or "")
    kind = _BY_ACTION.get(action)
    if kind is None:
        return []
    if kind == POLICY_APPLIED:
        data.update(
            policy_id=details.get("policy_id"),
            sha256=details.get("sha256"),
            source=details.get("source"),
        )
    if kind in (REQUESTED, APPROVED, REJECTED):
        data.update(target=details.get("target"), comment=details.get("comment"))
        for key in ("approvals_missing", "approver_roles"):
            if details.get(key) is not None:
                data[key] = details[key]
    found = [(kind, data)]
    # The request's own move, not what it archived on the way.
    if action in _MOVES and row.get("request_id") is not None and not details.get("side_effect"):
        found.append((APPLIED, dict(data)))
    return found
