"""Turn a policy back into plain data, for ``policy show``, the database copy and JSON.

The output is the policy file format with every default spelled out, so
``load_policy_text(yaml.safe_dump(policy_to_dict(p)))`` gives back a policy equal to ``p``.
Metric and tag checks keep their short form (``accuracy: ">= 0.95"``) unless they carry
provenance requirements or trusted writers, which only the long form can say.
"""

from __future__ import annotations

from typing import Any

from mlflow_governance.policy._values import format_duration
from mlflow_governance.policy.model import Gate, Notification, Policy


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The policy as JSON- and YAML-serialisable data in the policy file format.

    Args:
        policy: The policy.

    Returns:
        A dict of plain lists, dicts, strings, numbers and booleans.
    """
    return {
        "version": policy.version,
        "mode": policy.mode,
        "groups": {name: list(members) for name, members in policy.groups.items()},
        "roles": {name: list(role.permissions) for name, role in policy.roles.items()},
        "bindings": [
            {
                "role": binding.role,
                "principals": list(binding.principals),
                "models": list(binding.models),
                "workspaces": list(binding.workspaces),
            }
            for binding in policy.bindings
        ],
        "gates": {name: _gate_to_dict(gate) for name, gate in policy.gates.items()},
        "protect_delete": list(policy.protect_delete),
        "notifications": [_notification_to_dict(n) for n in policy.notifications],
    }


def _gate_to_dict(gate: Gate) -> dict[str, Any]:
    approvals = gate.approvals
    return {
        "targets": {
            "stages": list(gate.targets.stages),
            "aliases": list(gate.targets.aliases),
        },
        "from_stages": list(gate.from_stages),
        "approvals": {
            "required": approvals.required,
            "approver_roles": list(approvals.approver_roles),
            "distinct_from": list(approvals.distinct_from),
            "expire_after": (
                format_duration(approvals.expire_after) if approvals.expire_after else None
            ),
        },
        "checks": _checks_to_dict(gate),
        "apply": gate.apply,
        "rollback_approvals": gate.rollback_approvals,
        "break_glass_roles": list(gate.break_glass_roles),
        "archive_existing": gate.archive_existing,
        "models": list(gate.models),
    }


def _checks_to_dict(gate: Gate) -> dict[str, Any]:
    checks = gate.checks
    metrics: dict[str, Any] = {}
    for name, condition in checks.metrics.items():
        wanted = checks.metric_provenance.get(name)
        if wanted is None:
            metrics[name] = str(condition)
        else:
            metrics[name] = {
                "condition": str(condition),
                "logged_before_request": wanted.logged_before_request,
                "not_by_requester": wanted.not_by_requester,
            }
    tags: dict[str, Any] = {}
    for name, value in checks.tags.items():
        writers = checks.tag_set_by.get(name)
        tags[name] = value if writers is None else {"value": value, "set_by": list(writers)}
    return {"metrics": metrics, "tags": tags, "signature_required": checks.signature_required}


def _notification_to_dict(notification: Notification) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": notification.type,
        "events": list(notification.events),
        "models": list(notification.models),
    }
    for key in ("url", "secret_env", "queue_url", "topic_arn", "bus", "source", "region"):
        value = getattr(notification, key)
        if value is not None:
            data[key] = value
    if notification.type in ("webhook", "slack"):
        data["allow_insecure"] = notification.allow_insecure
    return data
