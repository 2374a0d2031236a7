"""Pure decisions over a loaded policy: who may do what, which gates apply, what they need.

Nothing here performs I/O or keeps state between calls; every function is a function of
its arguments, so the store can call them inside its transaction and tests can call them
with plain dataclasses. Refusals are built to read well inside the store's message
``Refused: <actor> may not <action> on <resource>: <reason> (rule: <rule>). <hint>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from mlflow_governance.policy._scope import (
    ANONYMOUS,
    anonymous_hint,
    candidate_bindings,
    covers,
    effective_groups,
    held_roles,
    holds_any,
    list_phrase,
    not_granted,
    principal_bindings,
    where,
    who,
    workspace_of,
)
from mlflow_governance.policy._values import format_duration
from mlflow_governance.policy.decisions import (
    ApprovalFact,
    Decision,
    GateReport,
    Grant,
    Subject,
    aware,
)
from mlflow_governance.policy.model import Gate, Policy
from mlflow_governance.policy.permissions import (
    PERMISSION_FORMS,
    Permission,
    canonical_stage,
    parse_permission,
)

__all__ = [
    "authorize",
    "count_approvals",
    "describe_approvals",
    "effective_groups",
    "gates_for",
    "may_approve",
    "may_break_glass",
    "model_globs_granting",
    "permissions_of",
    "protected_by",
    "roles_of",
]


def authorize(
    policy: Policy, subject: Subject, permission: str, model: str | None = None
) -> Decision:
    """Decide whether ``subject`` holds ``permission`` on ``model``.

    The first binding (in file order) that names the subject, applies in its workspace,
    covers the model and whose role grants the permission decides. Anything not granted
    is refused in ``enforce`` mode and reported as ``would-deny`` (the action proceeds) in
    ``audit-only`` mode.

    Args:
        policy: The policy.
        subject: Who is acting, and in which workspace.
        permission: A permission from the vocabulary, e.g. ``transition:Production`` or
            ``alias:champion`` (a concrete alias name, checked against granted globs).
        model: The registered model name; ``None`` for actions not about one model, which
            only bindings covering every model (``models: ["*"]``) grant.

    Returns:
        The decision, never raising for unknown permissions (they are simply not granted).
    """
    perm = parse_permission(permission)
    groups = effective_groups(policy, subject)
    if perm is None:
        return not_granted(
            policy,
            rule="unknown-permission",
            reason=f"'{permission}' is not a permission",
            hint=f"Valid permissions: {', '.join(PERMISSION_FORMS)}.",
        )
    scoped = policy.index.workspace_scoped
    workspace = workspace_of(subject)
    elsewhere: int | None = None
    other_workspace: int | None = None
    # Workspaces are tested inline rather than through candidate_bindings, so a refusal
    # can say that a binding would grant it in another workspace.
    for i in principal_bindings(policy, subject.user, groups):
        binding = policy.bindings[i]
        role = policy.roles.get(binding.role)
        if role is None or not role.grant.grants(perm):
            continue
        if scoped and not binding.workspace_globs.match(workspace):
            if other_workspace is None and covers(binding, model):
                other_workspace = i
            continue
        if covers(binding, model):
            return Decision(
                allowed=True,
                effect="allow",
                rule=f"bindings[{i}] (role {binding.role})",
                reason=f"{subject.user} holds role {binding.role} {_scope(model)}"
                f"{where(policy, subject)}, which grants '{perm.text}'",
            )
        if elsewhere is None:
            elsewhere = i
    reason = (
        f"{who(subject.user, groups)} has no binding granting '{perm.text}' {_scope(model)}"
        f"{where(policy, subject)}"
    )
    if elsewhere is not None:
        models = ", ".join(policy.bindings[elsewhere].models)
        reason += f"; bindings[{elsewhere}] grants it only on models {models}"
    if other_workspace is not None:
        workspaces = ", ".join(policy.bindings[other_workspace].workspaces)
        reason += f"; bindings[{other_workspace}] grants it only in workspaces {workspaces}"
    return not_granted(
        policy, rule="default-deny", reason=reason, hint=_hint(policy, subject, perm, model)
    )


def permissions_of(policy: Policy, subject: Subject, model: str | None) -> list[Grant]:
    """Explain what ``subject`` may do on ``model``: each permission with its first rule.

    Args:
        policy: The policy.
        subject: Who is asking.
        model: The model name, or ``None`` for permissions held on every model.

    Returns:
        ``(permission, rule)`` pairs in binding order, each permission once.
    """
    seen: dict[str, str] = {}
    for i in candidate_bindings(policy, subject, effective_groups(policy, subject)):
        binding = policy.bindings[i]
        role = policy.roles.get(binding.role)
        if role is None or not covers(binding, model):
            continue
        for permission in role.permissions:
            seen.setdefault(permission, f"bindings[{i}] (role {binding.role})")
    return [Grant(permission, rule) for permission, rule in seen.items()]


def roles_of(policy: Policy, subject: Subject, model: str | None) -> list[Grant]:
    """The roles ``subject`` holds on ``model``, each with the first binding granting it.

    Returns:
        ``(role, rule)`` pairs (the ``permission`` field of each :class:`Grant` holds the
        role name).
    """
    return [Grant(role, rule) for role, rule in held_roles(policy, subject, model).items()]


def model_globs_granting(
    policy: Policy, subject: Subject, permission: str
) -> tuple[str, ...] | None:
    """The model globs on which ``subject`` holds ``permission``, in its workspace.

    For filtering searches in SQL: the globs become a WHERE clause, so result pages stay
    full and page tokens stay right.

    Args:
        policy: The policy.
        subject: Who is asking, and in which workspace.
        permission: A permission, e.g. ``read``.

    Returns:
        ``None`` when a binding grants it on every model (``*``); otherwise the globs in
        binding order, without repeats (empty: on no model).
    """
    perm = parse_permission(permission)
    if perm is None:
        return ()
    globs: dict[str, None] = {}
    for i in candidate_bindings(policy, subject, effective_groups(policy, subject)):
        binding = policy.bindings[i]
        role = policy.roles.get(binding.role)
        if role is None or not role.grant.grants(perm):
            continue
        if binding.model_globs.everything:
            return None
        globs.update(dict.fromkeys(binding.models))
    return tuple(globs)


def gates_for(
    policy: Policy, model: str, *, stage: str | None = None, alias: str | None = None
) -> tuple[Gate, ...]:
    """The gates in front of moving a version of ``model`` to ``stage`` or ``alias``.

    Args:
        policy: The policy.
        model: The registered model name (matched against each gate's ``models``).
        stage: The target stage, matched case-insensitively.
        alias: The target alias, matched against the gate's alias globs.

    Returns:
        The matching gates in file order (empty when neither target is given).
    """
    index = policy.index
    by_stage = index.gates_by_stage.get(stage.lower(), ()) if stage is not None else ()
    by_alias = (
        tuple(gate for gate in index.alias_gates if gate.alias_globs.match(alias))
        if alias is not None
        else ()
    )
    if by_stage and by_alias:
        # Both targets given: keep file order and list a gate matching both once.
        chosen = {id(gate) for gate in (*by_stage, *by_alias)}
        candidates: tuple[Gate, ...] = tuple(
            gate for gate in policy.gates.values() if id(gate) in chosen
        )
    else:
        candidates = by_stage or by_alias
    return tuple(gate for gate in candidates if gate.model_globs.match(model))


def count_approvals(
    policy: Policy,
    gate: Gate,
    model: str,
    approvals: Sequence[ApprovalFact],
    *,
    requester: str | None,
    creator: str | None,
    now: datetime,
    rollback: bool = False,
    workspace: str | None = None,
) -> GateReport:
    """Count the approvals that satisfy ``gate`` for a move of ``model``.

    An approval counts when its approver holds an approver role on the model, is not
    excluded by ``distinct_from``, has not expired and has not already been counted.
    Naive datetimes are taken as UTC so stored and fresh times compare.

    Args:
        policy: The policy (its bindings say who holds the approver roles).
        gate: The gate.
        model: The registered model name.
        approvals: The approvals recorded for the request, in any order.
        requester: Who opened the request.
        creator: Who created the version, if known.
        now: The current time.
        rollback: Count against ``rollback_approvals`` instead of ``approvals.required``.
        workspace: The workspace of the model (and so of the request); approver roles
            count only through bindings applying there. ``None``: MLflow's ``default``.

    Returns:
        The report, with a reason for every approval that does not count.
    """
    required = gate.required_approvals(rollback=rollback)
    eligible = policy.index.approver_roles.get(gate.name, frozenset(gate.approvals.approver_roles))
    distinct = gate.approvals.distinct_from
    expire_after = gate.approvals.expire_after
    current = aware(now)
    counted: list[str] = []
    discarded: list[tuple[str, str]] = []
    for fact in sorted(approvals, key=lambda f: aware(f.time)):
        approver = fact.approver
        age = current - aware(fact.time)
        if approver in counted:
            why = "duplicate: an approval by the same person already counts"
        elif not holds_any(policy, Subject(approver, fact.groups, workspace), eligible, model):
            why = (
                f"not an approver: holds none of {_roles_phrase(gate, eligible)} on model "
                f"{model}{where(policy, Subject(approver, workspace=workspace))}"
            )
        elif "requester" in distinct and approver == requester:
            why = "is the requester; the gate requires a different approver"
        elif "version_creator" in distinct and creator is not None and approver == creator:
            why = "created the version; the gate requires a different approver"
        elif expire_after is not None and age > expire_after:
            why = (
                f"expired: given {format_duration(age)} ago, approvals expire after "
                f"{format_duration(expire_after)}"
            )
        else:
            counted.append(approver)
            continue
        discarded.append((approver, why))
    return GateReport(
        required=required,
        valid=len(counted),
        approvers=tuple(counted),
        discarded=tuple(discarded),
        satisfied=len(counted) >= required,
    )


def describe_approvals(policy: Policy, gate: Gate, report: GateReport) -> str:
    """Say where approvals stand, e.g. ``needs 2 approvals from role approver, 0 so far``."""
    if report.satisfied:
        return f"has {report.valid} of {report.required} required approvals"
    noun = "approval" if report.required == 1 else "approvals"
    eligible = policy.index.approver_roles.get(gate.name, frozenset(gate.approvals.approver_roles))
    return (
        f"needs {report.required} {noun} from {_roles_phrase(gate, eligible)}, "
        f"{report.valid} so far"
    )


def may_approve(policy: Policy, gate: Gate, model: str, subject: Subject) -> Decision:
    """Whether ``subject`` is someone whose approval of ``gate`` on ``model`` would count.

    Separation of duties and expiry are not considered here: they depend on the request
    and are reported by :func:`count_approvals`.
    """
    eligible = policy.index.approver_roles.get(gate.name, frozenset(gate.approvals.approver_roles))
    return _role_decision(
        policy, subject, model, eligible, f"approve gate {gate.name}", _roles_phrase(gate, eligible)
    )


def may_break_glass(policy: Policy, gate: Gate, model: str, subject: Subject) -> Decision:
    """Whether ``subject`` holds one of the gate's ``break_glass_roles`` on ``model``."""
    roles = frozenset(gate.break_glass_roles)
    phrase = list_phrase("role", gate.break_glass_roles) if roles else "a break-glass role"
    return _role_decision(policy, subject, model, roles, f"break glass on gate {gate.name}", phrase)


def protected_by(
    policy: Policy, *, stage: str | None = None, aliases: Iterable[str] = ()
) -> str | None:
    """The ``protect_delete`` entry that forbids deleting a version, if any.

    Args:
        policy: The policy.
        stage: The version's current stage.
        aliases: The version's aliases.

    Returns:
        The protecting entry (a stage or alias name), or ``None`` when deletion is allowed.
    """
    canonical = canonical_stage(stage) if stage else None
    held = set(aliases)
    for entry in policy.protect_delete:
        if entry == canonical or (canonical_stage(entry) is None and entry in held):
            return entry
    return None


def _role_decision(
    policy: Policy,
    subject: Subject,
    model: str,
    roles: frozenset[str],
    action: str,
    roles_phrase: str,
) -> Decision:
    held = held_roles(policy, subject, model)
    place = where(policy, subject)
    for role, rule in held.items():
        if role in roles:
            return Decision(
                True, "allow", rule, f"{subject.user} holds role {role} on {model}{place}"
            )
    groups = effective_groups(policy, subject)
    if not roles:
        return not_granted(
            policy,
            rule="default-deny",
            reason=f"no role may {action}",
            hint="A policy admin must name the roles allowed to do so in the gate.",
        )
    grant = f"{roles_phrase} on model '{model}'{place}"
    return not_granted(
        policy,
        rule="default-deny",
        reason=f"{who(subject.user, groups)} holds none of {roles_phrase} on model {model}{place}",
        hint=anonymous_hint(grant) if subject.user == ANONYMOUS else f"Ask for {grant}.",
    )


def _hint(policy: Policy, subject: Subject, perm: Permission, model: str | None) -> str:
    ranked = _roles_granting(policy, perm)
    scope = f" on model '{model}'" if model is not None else " on every model"
    place = where(policy, subject)
    narrow = [role for role in ranked if not policy.roles[role].grant.everything][:2]
    if subject.user == ANONYMOUS:
        if not ranked:
            return anonymous_hint(f"a new role granting '{perm.text}'{scope}{place}")
        return anonymous_hint(
            f"role {(narrow or ranked)[0]}{scope}{place} "
            f"(roles granting '{perm.text}': {', '.join(ranked)})"
        )
    if not ranked:
        return (
            f"No role in the policy grants '{perm.text}'; a policy admin must add it to a "
            "role and bind that role."
        )
    return (
        f"Ask for role {' or '.join(narrow or ranked[:1])}{scope}{place}; "
        f"roles granting it: {', '.join(ranked)}."
    )


def _roles_granting(policy: Policy, perm: Permission) -> list[str]:
    index = policy.index
    known = index.granting.get(perm.text)
    if known is not None:
        return list(known)
    # Aliases are open-ended names, so only the roles granting some alias are scanned.
    return [role.name for role in index.alias_roles if role.grant.grants(perm)]


def _scope(model: str | None) -> str:
    return f"on model '{model}'" if model is not None else "on every model"


def _roles_phrase(gate: Gate, eligible: frozenset[str]) -> str:
    if gate.approvals.approver_roles:
        return list_phrase("role", gate.approvals.approver_roles)
    if eligible:
        return list_phrase("role", tuple(sorted(eligible)))
    return f"a holder of 'approve:{gate.name}'"
