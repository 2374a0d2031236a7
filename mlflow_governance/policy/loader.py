"""Load a policy file into :class:`~mlflow_governance.policy.model.Policy`, or say every way
it is wrong.

Validation never stops at the first problem: each issue is recorded with its file, line,
column, field path and the valid values, and one :class:`PolicyFileError` carries them all.
Reading the file it is given is the only I/O this package does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path as FilePath

import yaml

from mlflow_governance.exceptions import PolicyFileError, PolicyIssue
from mlflow_governance.policy._budget import MAX_BYTES, BudgetExceeded, text_size_problem
from mlflow_governance.policy._reader import Reader, describe, field_name
from mlflow_governance.policy._sections import read_gate, read_notification
from mlflow_governance.policy._yaml import ParsedDocument, Path, parse_yaml
from mlflow_governance.policy.model import (
    MODES,
    Binding,
    FrozenMap,
    Gate,
    Notification,
    Policy,
    Role,
)
from mlflow_governance.policy.permissions import (
    PERMISSION_FORMS,
    STAGES,
    WORKSPACE_FORM,
    Permission,
    alias_name_problem,
    canonical_stage,
    glob_problem,
    parse_permission,
    workspace_glob_problem,
)

TOP_KEYS: tuple[str, ...] = (
    "version",
    "mode",
    "groups",
    "roles",
    "bindings",
    "gates",
    "protect_delete",
    "notifications",
)
BINDING_KEYS: tuple[str, ...] = ("role", "principals", "models", "workspaces")
PRINCIPAL_FORMS: tuple[str, ...] = ("user:NAME", "group:NAME", "user:*")
_SECTION_NOUNS: dict[Path, str] = {("roles",): "role", ("gates",): "gate", ("groups",): "group"}


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate the policy file at ``path``.

    Args:
        path: The YAML file.

    Returns:
        The policy.

    Raises:
        PolicyFileError: The file cannot be read or is invalid; lists every issue.
    """
    return load_policy_text(read_policy_file(path), os.fspath(path))


def read_policy_file(path: str | os.PathLike[str]) -> str:
    """Read a policy file's text, refusing one larger than any policy can be.

    For callers that need the text itself (``policy apply`` stores it); reading no more
    than the size budget keeps a hostile path (a huge file, a FIFO, ``/dev/zero``) from
    filling memory before validation can refuse it.

    Args:
        path: The YAML file.

    Returns:
        The text, decoded as UTF-8.

    Raises:
        PolicyFileError: The file cannot be read, is not UTF-8 or is over the size budget.
    """
    source = os.fspath(path)
    try:
        # Read one byte past the budget and no more: the path may name something endless
        # or huge, and its size on disk may not say so.
        with FilePath(source).open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
        problem = text_size_problem(len(raw))
        if problem is not None:
            raise PolicyFileError([PolicyIssue(source, 0, 0, "(file)", problem)])
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyFileError(
            [PolicyIssue(source, 0, 0, "(file)", f"cannot read the policy file: {reason}")]
        ) from exc


def load_policy_text(text: str, source: str = "<string>") -> Policy:
    """Validate policy YAML given as text.

    Args:
        text: The YAML source.
        source: A name for messages (a path, or ``<string>``).

    Returns:
        The policy.

    Raises:
        PolicyFileError: The text is invalid; lists every issue, in file order.
    """
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise PolicyFileError([_syntax_issue(exc, source)]) from exc
    except BudgetExceeded as exc:
        issue = PolicyIssue(source, exc.line, exc.column, field_name(exc.path), exc.message)
        raise PolicyFileError([issue]) from None
    reader = Reader(document, source)
    policy = _read_policy(reader, document, source)
    if reader.issues or policy is None:
        # File order reads best when fixing several problems from top to bottom.
        raise PolicyFileError(sorted(reader.issues, key=lambda issue: (issue.line, issue.column)))
    return policy


def _syntax_issue(exc: yaml.YAMLError, source: str) -> PolicyIssue:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"not valid YAML: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return PolicyIssue(source, 0, 0, "(syntax)", message)
    return PolicyIssue(source, mark.line + 1, mark.column + 1, "(syntax)", message)


def _read_policy(reader: Reader, document: ParsedDocument, source: str) -> Policy | None:
    for duplicate in document.duplicates:
        noun = _SECTION_NOUNS.get(duplicate.path, "key")
        reader.add(
            (*duplicate.path, duplicate.key),
            f"duplicate {noun} '{duplicate.key}' (first at line {duplicate.first.line}); "
            "YAML would silently keep only the last one",
            position=duplicate.again,
        )
    for path, position, message in document.problems:
        reader.add(path, message, position=position)
    if document.data is None:
        reader.add((), "the policy file is empty; a policy needs at least 'version: 1'")
        return None
    data = reader.mapping((), document.data, TOP_KEYS, what="policy settings")
    if data is None:
        return None

    if reader.required((), data, "version", "version: 1") and data["version"] != 1:
        reader.add(("version",), f"unsupported version {data['version']!r}", ("1",))
    # A file that bothers to define roles means to enforce them; audit-only must be asked for.
    mode = reader.choice(("mode",), data.get("mode", "enforce"), MODES, what="mode") or "enforce"
    groups = _read_groups(reader, data.get("groups", {}))
    roles = _read_roles(reader, data.get("roles", {}))
    gates: dict[str, Gate] = {}
    raw_gates = reader.mapping(("gates",), data.get("gates", {}), what="gate names")
    for name, value in (raw_gates or {}).items():
        gate = read_gate(reader, name, value)
        if gate is not None:
            gates[name] = gate
    bindings = _read_bindings(reader, data.get("bindings", []), roles)
    protect = _read_protect_delete(reader, data.get("protect_delete", []))
    notifications: list[Notification] = []
    raw_notifications = data.get("notifications", [])
    if isinstance(raw_notifications, list):
        for i, value in enumerate(raw_notifications):
            notification = read_notification(reader, i, value)
            if notification is not None:
                notifications.append(notification)
    else:
        reader.add(("notifications",), f"expected a list, got {describe(raw_notifications)}")

    _check_references(reader, roles, gates, data)
    policy = Policy(
        version=1,
        mode=mode,
        groups=FrozenMap(groups),
        roles=FrozenMap(roles),
        bindings=tuple(bindings),
        gates=FrozenMap(gates),
        protect_delete=protect,
        notifications=tuple(notifications),
        source=source,
    )
    _check_satisfiable(reader, policy)
    return policy


def _read_groups(reader: Reader, value: object) -> dict[str, tuple[str, ...]]:
    data = reader.mapping(("groups",), value, what="group names to user lists")
    groups: dict[str, tuple[str, ...]] = {}
    for name, members in (data or {}).items():
        users = []
        for i, user in reader.string_items(("groups", name), members, what="user names") or ():
            if ":" in user:
                reader.add(
                    ("groups", name, i),
                    f"'{user}' is a principal; list plain user names in a group",
                )
            else:
                users.append(user)
        groups[name] = tuple(dict.fromkeys(users))
    return groups


def _read_roles(reader: Reader, value: object) -> dict[str, Role]:
    data = reader.mapping(("roles",), value, what="role names to permission lists")
    roles: dict[str, Role] = {}
    for name, permissions in (data or {}).items():
        path: Path = ("roles", name)
        if not isinstance(permissions, list):
            reader.add(path, f"expected a list of permissions, got {describe(permissions)}")
            roles[name] = Role(name)
            continue
        canonical: list[str] = []
        for i, item in enumerate(permissions):
            permission = _read_permission(reader, (*path, i), item)
            if permission is not None and permission.text not in canonical:
                canonical.append(permission.text)
        roles[name] = Role(name, tuple(canonical))
    return roles


def _read_permission(reader: Reader, path: Path, item: object) -> Permission | None:
    if not isinstance(item, str):
        reader.add(path, f"expected a permission, got {describe(item)}", PERMISSION_FORMS)
        return None
    permission = parse_permission(item)
    kind, _, arg = item.partition(":")
    if permission is None:
        if kind == "transition" and arg:
            reader.add(path, f"unknown stage '{arg}' in '{item}'", (*STAGES, "*"))
        elif kind == "approve" and arg:
            reader.add(path, f"'{arg}' is not a valid gate name in '{item}'")
        else:
            reader.add(path, f"unknown permission '{item}'", PERMISSION_FORMS)
        return None
    if permission.kind == "alias":
        problem = glob_problem(permission.arg)
        if problem:
            reader.add(path, f"bad alias glob in '{item}': {problem}")
            return None
    return permission


def _read_bindings(reader: Reader, value: object, roles: Mapping[str, Role]) -> list[Binding]:
    if not isinstance(value, list):
        reader.add(("bindings",), f"expected a list of bindings, got {describe(value)}")
        return []
    bindings: list[Binding] = []
    for i, entry in enumerate(value):
        path: Path = ("bindings", i)
        data = reader.mapping(
            path, entry, BINDING_KEYS, what="role, principals, models and workspaces"
        )
        if data is None:
            continue
        role = None
        if reader.required(path, data, "role", "role: contributor"):
            role = reader.string((*path, "role"), data["role"])
            if role is not None and role not in roles:
                defined = "" if roles else "; the file defines no roles"
                reader.add((*path, "role"), f"unknown role '{role}'{defined}", tuple(roles))
        principals = None
        if reader.required(path, data, "principals", 'principals: ["group:data-science"]'):
            principals = _read_principals(reader, (*path, "principals"), data["principals"])
        models = reader.globs((*path, "models"), data.get("models", ["*"]), what="model globs")
        if isinstance(data.get("models"), list) and not data["models"]:
            reader.add((*path, "models"), "an empty list makes the binding grant nothing")
        workspaces = _read_workspaces(reader, (*path, "workspaces"), data.get("workspaces", ["*"]))
        if role is not None and principals:
            bindings.append(Binding(role, principals, models or ("*",), workspaces or ("*",)))
    return bindings


def _read_workspaces(reader: Reader, path: Path, value: object) -> tuple[str, ...]:
    items = reader.string_items(path, value, what="workspace globs")
    if items is None:
        return ()
    if not items and isinstance(value, list):
        reader.add(
            path, "an empty list makes the binding grant nothing; omit it for every workspace"
        )
    good = []
    for i, pattern in items:
        problem = workspace_glob_problem(pattern)
        if problem:
            reader.add((*path, i), problem, WORKSPACE_FORM)
        else:
            good.append(pattern)
    return tuple(dict.fromkeys(good))


def _read_principals(reader: Reader, path: Path, value: object) -> tuple[str, ...] | None:
    items = reader.string_items(path, value, what="principals")
    if items is None:
        return None
    if not value:
        reader.add(path, "a binding needs at least one principal", PRINCIPAL_FORMS)
    good = []
    for i, principal in items:
        kind, sep, name = principal.partition(":")
        if not sep or kind not in ("user", "group") or not name.strip():
            reader.add((*path, i), f"'{principal}' is not a principal", PRINCIPAL_FORMS)
        elif kind == "group" and name == "*":
            reader.add((*path, i), "'group:*' is not supported; use 'user:*' for everyone")
        else:
            good.append(principal)
    return tuple(dict.fromkeys(good))


def _read_protect_delete(reader: Reader, value: object) -> tuple[str, ...]:
    items = reader.string_items(("protect_delete",), value, what="stages or aliases")
    entries = []
    for i, name in items or ():
        # A stage spelled in any case wins over an alias of the same name: `production`
        # in this list almost always means the stage.
        stage = canonical_stage(name)
        problem = alias_name_problem(name) if stage is None else None
        if problem:
            reader.add(
                ("protect_delete", i),
                f"must be a stage name or an alias: {problem}",
                (*STAGES, "<alias>"),
            )
        else:
            entries.append(stage or name)
    return tuple(dict.fromkeys(entries))


def _check_references(
    reader: Reader, roles: Mapping[str, Role], gates: Mapping[str, Gate], data: dict[str, object]
) -> None:
    """Names used in one section must be defined in another; checked once all are read."""
    raw_roles = data.get("roles")
    for name in roles:
        permissions = raw_roles.get(name) if isinstance(raw_roles, dict) else None
        for i, item in enumerate(permissions if isinstance(permissions, list) else []):
            permission = parse_permission(item) if isinstance(item, str) else None
            if permission and permission.kind == "approve" and permission.arg not in gates:
                reader.add(
                    ("roles", name, i),
                    f"'{item}' names gate '{permission.arg}', which is not defined",
                    tuple(f"approve:{gate}" for gate in gates),
                )
    for gate in gates.values():
        named: list[tuple[Path, tuple[str, ...]]] = [
            (("approvals", "approver_roles"), gate.approvals.approver_roles),
            (("break_glass_roles",), gate.break_glass_roles),
        ]
        named += [
            (("checks", "tags", tag, "set_by"), r) for tag, r in gate.checks.tag_set_by.items()
        ]
        for where, names in named:
            for i, role_name in enumerate(names):
                if role_name not in roles:
                    path: Path = ("gates", gate.name, *where, i)
                    reader.add(path, f"unknown role '{role_name}'", tuple(roles))


def _check_satisfiable(reader: Reader, policy: Policy) -> None:
    """Refuse a gate whose approval count the bound people could never reach.

    Users named directly or through ``groups:`` are countable. A binding to ``user:*`` or to
    a group the file does not define is unbounded: a trusted header may put anyone in it.
    """
    for gate in policy.gates.values():
        eligible = policy.index.approver_roles.get(gate.name, frozenset())
        users: set[str] = set()
        unbounded = False
        for binding in policy.bindings:
            if binding.role not in eligible:
                continue
            for principal in binding.principals:
                kind, _, name = principal.partition(":")
                if principal == "user:*" or (kind == "group" and name not in policy.groups):
                    unbounded = True
                elif kind == "group":
                    users.update(policy.groups[name])
                else:
                    users.add(name)
        if unbounded:
            continue
        who = ", ".join(sorted(users)) or "nobody"
        roles = (
            f"role {' or '.join(sorted(eligible))}"
            if eligible
            else f"a role granting approve:{gate.name}"
        )
        counts: list[tuple[Path, int]] = [
            (("gates", gate.name, "approvals", "required"), gate.approvals.required)
        ]
        if gate.rollback_approvals is not None:
            counts.append((("gates", gate.name, "rollback_approvals"), gate.rollback_approvals))
        for path, count in counts:
            if count > len(users):
                reader.add(
                    path,
                    f"needs {count} approvals but only {len(users)} distinct user(s) hold "
                    f"{roles}: {who}; bind the approver role to more people or lower the count",
                )
