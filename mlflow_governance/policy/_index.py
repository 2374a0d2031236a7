"""Lookups precomputed from a policy, so each decision is a few dict hits.

Built once when a :class:`~mlflow_governance.policy.model.Policy` is created and kept in a
field excluded from equality. The store asks the policy something on every governed write
(and the tag-writer question on every tag write), so anything a decision would otherwise
find by scanning every binding or gate is indexed here.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow_governance.policy.permissions import PERMISSION_FORMS, Permission, parse_permission

if TYPE_CHECKING:
    from mlflow_governance.policy.model import Gate, Policy, Role


def fold_tag_key(key: str) -> str:
    """The form in which two tag keys are "the same tag" to some database.

    MLflow keeps version tags in a table keyed by the tag's name. On MySQL and MariaDB the
    default collations compare that key without case or accents and ignore trailing
    spaces, so a write of ``Validation_Status `` can land on the row ``validation_status``.
    Keys are therefore folded that loosely before asking whether a gate restricts them:
    treating a few more keys as restricted costs nothing, missing one opens the gate.
    """
    decomposed = unicodedata.normalize("NFKD", key)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return bare.casefold().rstrip(" ")


@dataclass(frozen=True)
class TagWriters:
    """One gate's restriction on who may write a tag.

    Attributes:
        gate: The gate whose ``checks.tags`` entry names trusted writers.
        key: The tag key as the gate spells it.
        roles: The roles trusted to set, change or delete it (``set_by``).
    """

    gate: Gate
    key: str
    roles: frozenset[str]


@dataclass(frozen=True)
class PolicyIndex:
    """Lookups precomputed from a policy so each decision is a few dict hits.

    Attributes:
        user_groups: User to the policy groups listing them.
        by_principal: ``user:X``/``group:G``/``user:*`` to the indexes of its bindings.
        workspace_scoped: Whether some binding applies in some workspaces only; when not,
            decisions skip the workspace test altogether.
        approver_roles: Gate name to the roles whose holders may approve it.
        granting: Each non-alias permission to the roles granting it, narrowest first
            (refusal hints name them).
        alias_roles: Roles that grant some alias, narrowest first.
        gates_by_stage: Lower-cased stage name to the gates targeting it, in file order.
        alias_gates: Gates with alias targets, in file order.
        tag_writers: Folded tag key (see :func:`fold_tag_key`) to the gates restricting
            who may write it, in file order.
    """

    user_groups: Mapping[str, frozenset[str]]
    by_principal: Mapping[str, tuple[int, ...]]
    workspace_scoped: bool
    approver_roles: Mapping[str, frozenset[str]]
    granting: Mapping[str, tuple[str, ...]]
    alias_roles: tuple[Role, ...]
    gates_by_stage: Mapping[str, tuple[Gate, ...]]
    alias_gates: tuple[Gate, ...]
    tag_writers: Mapping[str, tuple[TagWriters, ...]]

    @classmethod
    def of(cls, policy: Policy) -> PolicyIndex:
        """Build the index of ``policy``."""
        user_groups: dict[str, set[str]] = {}
        for group, members in policy.groups.items():
            for member in members:
                user_groups.setdefault(member, set()).add(group)
        by_principal: dict[str, list[int]] = {}
        for i, binding in enumerate(policy.bindings):
            for principal in dict.fromkeys(binding.principals):
                by_principal.setdefault(principal, []).append(i)
        approver_roles: dict[str, frozenset[str]] = {}
        for gate in policy.gates.values():
            if gate.approvals.approver_roles:
                approver_roles[gate.name] = frozenset(gate.approvals.approver_roles)
            else:
                wanted = Permission("approve", gate.name)
                approver_roles[gate.name] = frozenset(
                    role.name for role in policy.roles.values() if role.grant.grants(wanted)
                )
        # Least privilege first: a hint should suggest the narrowest role that would do.
        ranked = sorted(
            policy.roles.values(), key=lambda role: (role.grant.everything, len(role.permissions))
        )
        vocabulary = {parse_permission(text) for text in PERMISSION_FORMS if "<" not in text}
        vocabulary |= {Permission("approve", name) for name in policy.gates}
        vocabulary |= {
            permission
            for role in ranked
            for permission in map(parse_permission, role.permissions)
            if permission is not None and permission.kind == "approve"
        }
        granting = {
            permission.text: tuple(role.name for role in ranked if role.grant.grants(permission))
            for permission in vocabulary
            if permission is not None
        }
        gates_by_stage: dict[str, list[Gate]] = {}
        tag_writers: dict[str, list[TagWriters]] = {}
        for gate in policy.gates.values():
            for stage in gate.stage_keys:
                gates_by_stage.setdefault(stage, []).append(gate)
            for key, roles in gate.checks.tag_set_by.items():
                writers = TagWriters(gate, key, frozenset(roles))
                tag_writers.setdefault(fold_tag_key(key), []).append(writers)
        return cls(
            user_groups={user: frozenset(groups) for user, groups in user_groups.items()},
            by_principal={p: tuple(ids) for p, ids in by_principal.items()},
            workspace_scoped=any(not b.workspace_globs.everything for b in policy.bindings),
            approver_roles=approver_roles,
            granting=granting,
            alias_roles=tuple(
                role for role in ranked if role.grant.everything or role.grant.aliases.patterns
            ),
            gates_by_stage={stage: tuple(gates) for stage, gates in gates_by_stage.items()},
            alias_gates=tuple(g for g in policy.gates.values() if g.targets.aliases),
            tag_writers={key: tuple(found) for key, found in tag_writers.items()},
        )
