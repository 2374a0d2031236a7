"""Pure decisions over a loaded policy: who may do what, which gates apply, what they need.

Nothing here performs I/O or keeps state between calls; every function is a function of
its arguments, so the store can call them inside its transaction and tests can call them
with plain dataclasses. Refusals are built to read well inside the store's message
``Refused: <actor> may not <action> on <resource>: <reason> (rule: <rule>). <hint>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from mlflow_governance.policy._values import format_duration
from mlflow_governance.policy.decisions import (
    ApprovalFact,
    CheckResult,
    Decision,
    GateReport,
    Grant,
    Subject,
    VersionFacts,
)
from mlflow_governance.policy.model import Binding, Gate, Policy, format_number
from mlflow_governance.policy.permissions import (
    PERMISSION_FORMS,
    Permission,
    canonical_stage,
    parse_permission,
)


def effective_groups(policy: Policy, subject: Subject) -> frozenset[str]:
    """The subject's own groups plus the policy groups that list the user."""
    listed = policy.index.user_groups.get(subject.user)
    if listed is None:
        return subject.groups
    return subject.groups | listed if subject.groups else listed


def authorize(
    policy: Policy, subject: Subject, permission: str, model: str | None = None
) -> Decision:
    """Decide whether ``subject`` holds ``permission`` on ``model``.

    The first binding (in file order) that names the subject, covers the model and whose
    role grants the permission decides. Anything not granted is refused in ``enforce``
    mode and reported as ``would-deny`` (the action proceeds) in ``audit-only`` mode.

    Args:
        policy: The policy.
        subject: Who is acting.
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
        return _not_granted(
            policy,
            rule="unknown-permission",
            reason=f"'{permission}' is not a permission",
            hint=f"Valid permissions: {', '.join(PERMISSION_FORMS)}.",
        )
    elsewhere: int | None = None
    for i in _candidate_bindings(policy, subject.user, groups):
        binding = policy.bindings[i]
        role = policy.roles.get(binding.role)
        if role is None or not role.grant.grants(perm):
            continue
        if _covers(binding, model):
            return Decision(
                allowed=True,
                effect="allow",
                rule=f"bindings[{i}] (role {binding.role})",
                reason=f"{subject.user} holds role {binding.role} {_scope(model)}, "
                f"which grants '{perm.text}'",
            )
        if elsewhere is None:
            elsewhere = i
    reason = f"{_who(subject.user, groups)} has no binding granting '{perm.text}' {_scope(model)}"
    if elsewhere is not None:
        models = ", ".join(policy.bindings[elsewhere].models)
        reason += f"; bindings[{elsewhere}] grants it only on models {models}"
    return _not_granted(policy, rule="default-deny", reason=reason, hint=_hint(policy, perm, model))


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
    for i in _candidate_bindings(policy, subject.user, effective_groups(policy, subject)):
        binding = policy.bindings[i]
        role = policy.roles.get(binding.role)
        if role is None or not _covers(binding, model):
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
    return [Grant(role, rule) for role, rule in _held_roles(policy, subject, model).items()]


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


def evaluate_checks(gate: Gate, facts: VersionFacts) -> tuple[CheckResult, ...]:
    """Run the gate's checks against a version.

    Returns:
        One result per requirement, in this order: ``from_stages`` (if set), each metric,
        each tag, ``signature`` (if required). A missing metric or tag fails with actual
        ``missing``.
    """
    results: list[CheckResult] = []
    if gate.from_stages:
        current = canonical_stage(facts.current_stage) or facts.current_stage
        results.append(
            CheckResult(
                name="from_stages",
                passed=current in gate.from_stages,
                expected="stage " + " or ".join(gate.from_stages),
                actual=current,
            )
        )
    for name, condition in gate.checks.metrics.items():
        raw = facts.metrics.get(name)
        if raw is None:
            results.append(CheckResult(f"metric {name}", False, str(condition), "missing"))
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            results.append(CheckResult(f"metric {name}", False, str(condition), repr(raw)))
            continue
        results.append(
            CheckResult(
                f"metric {name}", condition.holds(value), str(condition), format_number(value)
            )
        )
    for name, wanted in gate.checks.tags.items():
        actual = facts.tags.get(name)
        results.append(
            CheckResult(
                f"tag {name}",
                actual == wanted,
                wanted,
                "missing" if actual is None else actual,
            )
        )
    if gate.checks.signature_required:
        present = "present" if facts.has_signature else "missing"
        results.append(CheckResult("signature", facts.has_signature, "present", present))
    return tuple(results)


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

    Returns:
        The report, with a reason for every approval that does not count.
    """
    required = gate.required_approvals(rollback=rollback)
    eligible = policy.index.approver_roles.get(gate.name, frozenset(gate.approvals.approver_roles))
    distinct = gate.approvals.distinct_from
    expire_after = gate.approvals.expire_after
    current = _aware(now)
    counted: list[str] = []
    discarded: list[tuple[str, str]] = []
    for fact in sorted(approvals, key=lambda f: _aware(f.time)):
        who = fact.approver
        age = current - _aware(fact.time)
        if who in counted:
            why = "duplicate: an approval by the same person already counts"
        elif not _holds_any(policy, Subject(who, fact.groups), eligible, model):
            why = f"not an approver: holds none of {_roles_phrase(gate, eligible)} on model {model}"
        elif "requester" in distinct and who == requester:
            why = "is the requester; the gate requires a different approver"
        elif "version_creator" in distinct and creator is not None and who == creator:
            why = "created the version; the gate requires a different approver"
        elif expire_after is not None and age > expire_after:
            why = (
                f"expired: given {format_duration(age)} ago, approvals expire after "
                f"{format_duration(expire_after)}"
            )
        else:
            counted.append(who)
            continue
        discarded.append((who, why))
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
    phrase = _list_phrase("role", gate.break_glass_roles) if roles else "a break-glass role"
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


def _candidate_bindings(policy: Policy, user: str, groups: frozenset[str]) -> Sequence[int]:
    by_principal = policy.index.by_principal
    found: list[tuple[int, ...]] = []
    for key in (f"user:{user}", "user:*"):
        ids = by_principal.get(key)
        if ids:
            found.append(ids)
    for group in groups:
        ids = by_principal.get(f"group:{group}")
        if ids:
            found.append(ids)
    if not found:
        return ()
    if len(found) == 1:
        return found[0]
    # File order matters: the first granting binding is the rule reported.
    return sorted({i for ids in found for i in ids})


def _covers(binding: Binding, model: str | None) -> bool:
    if model is None:
        return binding.model_globs.everything
    return binding.model_globs.match(model)


def _held_roles(policy: Policy, subject: Subject, model: str | None) -> dict[str, str]:
    held: dict[str, str] = {}
    for i in _candidate_bindings(policy, subject.user, effective_groups(policy, subject)):
        binding = policy.bindings[i]
        if _covers(binding, model):
            held.setdefault(binding.role, f"bindings[{i}] (role {binding.role})")
    return held


def _holds_any(policy: Policy, subject: Subject, roles: frozenset[str], model: str) -> bool:
    if not roles:
        return False
    for i in _candidate_bindings(policy, subject.user, effective_groups(policy, subject)):
        binding = policy.bindings[i]
        if binding.role in roles and _covers(binding, model):
            return True
    return False


def _role_decision(
    policy: Policy,
    subject: Subject,
    model: str,
    roles: frozenset[str],
    action: str,
    roles_phrase: str,
) -> Decision:
    held = _held_roles(policy, subject, model)
    for role, rule in held.items():
        if role in roles:
            return Decision(True, "allow", rule, f"{subject.user} holds role {role} on {model}")
    groups = effective_groups(policy, subject)
    if not roles:
        return _not_granted(
            policy,
            rule="default-deny",
            reason=f"no role may {action}",
            hint="A policy admin must name the roles allowed to do so in the gate.",
        )
    return _not_granted(
        policy,
        rule="default-deny",
        reason=f"{_who(subject.user, groups)} holds none of {roles_phrase} on model {model}",
        hint=f"Ask for {roles_phrase} on model '{model}'.",
    )


def _not_granted(policy: Policy, *, rule: str, reason: str, hint: str | None) -> Decision:
    if policy.enforcing:
        return Decision(False, "deny", rule, reason, hint)
    # Audit-only: the action proceeds, but the record says what enforcement would do.
    return Decision(True, "would-deny", "mode audit-only", reason, hint)


def _hint(policy: Policy, perm: Permission, model: str | None) -> str:
    ranked = _roles_granting(policy, perm)
    if not ranked:
        return (
            f"No role in the policy grants '{perm.text}'; a policy admin must add it to a "
            "role and bind that role."
        )
    narrow = [role for role in ranked if not policy.roles[role].grant.everything][:2]
    scope = f" on model '{model}'" if model is not None else " on every model"
    return (
        f"Ask for role {' or '.join(narrow or ranked[:1])}{scope}; "
        f"roles granting it: {', '.join(ranked)}."
    )


def _roles_granting(policy: Policy, perm: Permission) -> list[str]:
    index = policy.index
    known = index.granting.get(perm.text)
    if known is not None:
        return list(known)
    # Aliases are open-ended names, so only the roles granting some alias are scanned.
    return [role.name for role in index.alias_roles if role.grant.grants(perm)]


def _who(user: str, groups: frozenset[str]) -> str:
    if not groups:
        return f"{user} (no groups)"
    return f"{user} (groups: {', '.join(sorted(groups))})"


def _scope(model: str | None) -> str:
    return f"on model '{model}'" if model is not None else "on every model"


def _roles_phrase(gate: Gate, eligible: frozenset[str]) -> str:
    if gate.approvals.approver_roles:
        return _list_phrase("role", gate.approvals.approver_roles)
    if eligible:
        return _list_phrase("role", tuple(sorted(eligible)))
    return f"a holder of 'approve:{gate.name}'"


def _list_phrase(noun: str, names: Sequence[str]) -> str:
    if len(names) == 1:
        return f"{noun} {names[0]}"
    return f"{noun}s {' or '.join(names)}"


def _aware(moment: datetime) -> datetime:
    # Databases often hand back naive UTC datetimes; comparing them with aware ones raises.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
