"""Which bindings apply to a subject, and the phrases refusals are built from.

Shared by every decision that looks at bindings (:mod:`~mlflow_governance.policy.evaluator`
and :mod:`~mlflow_governance.policy.checks`), so a binding's principals, models and
workspaces are honoured the same way everywhere: one place to get right.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlflow_governance.policy.decisions import Decision, Subject
from mlflow_governance.policy.model import DEFAULT_WORKSPACE, Binding, Policy

#: The user name the store gives a caller nobody authenticated: every caller of ``mlflow ui``
#: and of ``mlflow server`` without ``--app-name governance`` (``identity.ANONYMOUS``; the
#: policy package names it itself so that it imports nothing from outside).
ANONYMOUS = "anonymous"


def anonymous_hint(grant: str) -> str:
    """The way out of a refusal for :data:`ANONYMOUS`, who cannot ask for anything.

    Telling a caller nobody authenticated to "ask for role viewer" leads nowhere: no one
    can be granted a role on their behalf. Two things do help, so the hint names both.

    Args:
        grant: What a binding would have to grant, e.g. ``role viewer on model 'm'``.
    """
    return (
        "Every caller of this server is anonymous: mlflow ui and mlflow server without "
        "--app-name governance log nobody in. To let anonymous callers do it, bind "
        f"user:anonymous to {grant} in the policy; to have people log in and hold roles "
        "of their own, serve the registry with mlflow server --app-name governance."
    )


def effective_groups(policy: Policy, subject: Subject) -> frozenset[str]:
    """The subject's own groups plus the policy groups that list the user."""
    listed = policy.index.user_groups.get(subject.user)
    if listed is None:
        return subject.groups
    return subject.groups | listed if subject.groups else listed


def workspace_of(subject: Subject) -> str:
    """The workspace a subject acts in (MLflow's ``default`` when none is given)."""
    return DEFAULT_WORKSPACE if subject.workspace is None else subject.workspace


def principal_bindings(policy: Policy, user: str, groups: frozenset[str]) -> Sequence[int]:
    """The indexes of the bindings naming ``user`` or one of ``groups``, in file order.

    Workspaces are not considered here; :func:`candidate_bindings` does.
    """
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


def candidate_bindings(policy: Policy, subject: Subject, groups: frozenset[str]) -> Sequence[int]:
    """The bindings that apply to ``subject``: naming it, in its workspace, in file order."""
    ids = principal_bindings(policy, subject.user, groups)
    if not ids or not policy.index.workspace_scoped:
        # The common case, a policy without workspaces, pays nothing for them.
        return ids
    workspace = workspace_of(subject)
    bindings = policy.bindings
    return [i for i in ids if bindings[i].workspace_globs.match(workspace)]


def covers(binding: Binding, model: str | None) -> bool:
    """Whether ``binding`` covers ``model`` (``None``: only a binding on every model does)."""
    if model is None:
        return binding.model_globs.everything
    return binding.model_globs.match(model)


def held_roles(policy: Policy, subject: Subject, model: str | None) -> dict[str, str]:
    """Role name to the first rule granting it to ``subject`` on ``model``."""
    held: dict[str, str] = {}
    for i in candidate_bindings(policy, subject, effective_groups(policy, subject)):
        binding = policy.bindings[i]
        if covers(binding, model):
            held.setdefault(binding.role, f"bindings[{i}] (role {binding.role})")
    return held


def holds_any(policy: Policy, subject: Subject, roles: frozenset[str], model: str) -> bool:
    """Whether ``subject`` holds one of ``roles`` on ``model``."""
    if not roles:
        return False
    for i in candidate_bindings(policy, subject, effective_groups(policy, subject)):
        binding = policy.bindings[i]
        if binding.role in roles and covers(binding, model):
            return True
    return False


def not_granted(policy: Policy, *, rule: str, reason: str, hint: str | None) -> Decision:
    """A refusal: ``deny`` when enforcing, else ``would-deny`` (the action proceeds)."""
    if policy.enforcing:
        return Decision(False, "deny", rule, reason, hint)
    # Audit-only: the action proceeds, but the record says what enforcement would do.
    return Decision(True, "would-deny", "mode audit-only", reason, hint)


def who(user: str, groups: frozenset[str]) -> str:
    """``alice (groups: a, b)`` or ``alice (no groups)``."""
    if not groups:
        return f"{user} (no groups)"
    return f"{user} (groups: {', '.join(sorted(groups))})"


def where(policy: Policy, subject: Subject) -> str:
    """`` in workspace 'x'`` when the policy has workspace bindings, else nothing.

    Policies without ``workspaces`` keep their messages as they were.
    """
    if not policy.index.workspace_scoped:
        return ""
    return f" in workspace '{workspace_of(subject)}'"


def list_phrase(noun: str, names: Sequence[str]) -> str:
    """``role a`` or ``roles a or b``."""
    if len(names) == 1:
        return f"{noun} {names[0]}"
    return f"{noun}s {' or '.join(names)}"
