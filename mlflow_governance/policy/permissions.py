"""The permission vocabulary, stage names and glob patterns shared by loader and evaluator.

Everything here is a pure function of its arguments. Parsing is strict on purpose: a
permission the vocabulary does not know is refused at load time with the list of valid
forms, rather than silently granting nothing at run time.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

#: MLflow's model version stages, in the spelling MLflow uses.
STAGES: tuple[str, ...] = ("None", "Staging", "Production", "Archived")
_STAGE_BY_KEY = {stage.lower(): stage for stage in STAGES}

#: Permissions without an argument.
SIMPLE_PERMISSIONS: tuple[str, ...] = (
    "read",
    "register",
    "edit",
    "delete",
    "request",
    "audit:read",
    "policy:admin",
    "*",
)

#: Every permission form, as shown to users when one is wrong.
PERMISSION_FORMS: tuple[str, ...] = (
    *SIMPLE_PERMISSIONS,
    *(f"transition:{stage}" for stage in STAGES),
    "transition:*",
    "alias:<glob>",
    "approve:<gate>",
)

# Gate names end up inside ``approve:<gate>`` and on the command line, so they stay plain.
_GATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
# MLflow's own rule for alias names (letters, digits, ``_`` and ``-``).
_ALIAS_NAME = re.compile(r"[\w-]+\Z")
_VERSION_LIKE = re.compile(r"v\d+\Z", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Permission:
    """A parsed permission.

    Attributes:
        kind: ``read``, ``register``, ``edit``, ``delete``, ``request``, ``audit:read``,
            ``policy:admin``, ``*``, ``transition``, ``alias`` or ``approve``.
        arg: The stage, alias (or alias glob) or gate name; empty for simple permissions.
        text: The canonical spelling, e.g. ``transition:Production``.
    """

    kind: str
    arg: str = ""
    text: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once: every decision compares it against the role's granted set.
        object.__setattr__(self, "text", f"{self.kind}:{self.arg}" if self.arg else self.kind)


def canonical_stage(text: str) -> str | None:
    """Return MLflow's spelling of a stage name matched case-insensitively, else ``None``."""
    return _STAGE_BY_KEY.get(text.lower())


def parse_permission(text: str) -> Permission | None:
    """Parse a permission string into its canonical form.

    Stages are matched case-insensitively (``transition:production`` becomes
    ``transition:Production``); everything else is case-sensitive.

    Args:
        text: The permission as written in a role or asked for by a caller.

    Returns:
        The parsed permission, or ``None`` when the text is not in the vocabulary.
    """
    if text in SIMPLE_PERMISSIONS:
        return Permission(text, "")
    kind, sep, arg = text.partition(":")
    if not sep or not arg:
        return None
    if kind == "transition":
        if arg == "*":
            return Permission(kind, arg)
        stage = canonical_stage(arg)
        return Permission(kind, stage) if stage else None
    if kind == "alias":
        return Permission(kind, arg)
    if kind == "approve" and is_gate_name(arg):
        return Permission(kind, arg)
    return None


def is_gate_name(name: str) -> bool:
    """Whether ``name`` is a valid gate name (letters, digits, ``_``, ``.``, ``-``)."""
    return bool(_GATE_NAME.match(name))


def alias_name_problem(name: str) -> str | None:
    """Say what is wrong with an alias name by MLflow's rules, or ``None`` if it is valid."""
    if not _ALIAS_NAME.match(name):
        return f"'{name}' is not a valid alias name (letters, digits, '_' and '-' only)"
    if name.lower() == "latest":
        return "'latest' is reserved by MLflow and cannot be an alias"
    if _VERSION_LIKE.match(name):
        return f"'{name}' looks like a version reference, which MLflow forbids as an alias"
    return None


def glob_problem(pattern: str) -> str | None:
    """Say what is wrong with an fnmatch-style glob, or ``None`` if it is valid.

    ``fnmatch`` itself never rejects a pattern: an unbalanced ``[`` silently becomes a
    literal character, so ``fraud-[ab`` would match nothing anybody meant. We reject it.
    """
    if not pattern:
        return "an empty pattern matches nothing"
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            # Same rule as fnmatch.translate: a ``]`` right after ``[`` or ``[!`` is literal.
            j = i + 1
            if j < len(pattern) and pattern[j] == "!":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            close = pattern.find("]", j)
            if close < 0:
                return f"unbalanced '[' at position {i + 1} in '{pattern}'"
            i = close
        i += 1
    return None


#: How MLflow names workspaces, as shown when a ``workspaces`` glob could match none.
WORKSPACE_FORM: tuple[str, ...] = ("lowercase letters, digits and '-', e.g. team-a", "ml-*", "*")
# MLflow's rule: 2 to 63 lowercase letters, digits and inner hyphens.
_WORKSPACE_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")
_BRACKETS = re.compile(r"\[!?\]?[^\]]*\]")


def workspace_glob_problem(pattern: str) -> str | None:
    """Say why a ``workspaces`` glob is wrong or could match no workspace, else ``None``.

    MLflow workspace names are lowercase, so ``Team-A`` would silently match nothing; a
    binding that quietly applies nowhere is the kind of mistake the loader exists to catch.
    """
    problem = glob_problem(pattern)
    if problem:
        return f"bad glob: {problem}"
    if not has_magic(pattern):
        if len(pattern) < 2 or not _WORKSPACE_NAME.match(pattern):
            return f"'{pattern}' is not an MLflow workspace name"
        return None
    literal = _BRACKETS.sub("", pattern)
    if any(
        not (char.isascii() and (char.islower() or char.isdigit()))
        for char in literal.replace("-", "").replace("*", "").replace("?", "")
    ):
        return f"'{pattern}' can match no MLflow workspace name"
    return None


def has_magic(pattern: str) -> bool:
    """Whether ``pattern`` contains glob wildcards (``*``, ``?``, ``[``)."""
    return any(char in pattern for char in "*?[")


@dataclass(frozen=True)
class GlobSet:
    """A set of fnmatch-style globs compiled once for fast, case-sensitive matching.

    Most globs in a policy are a plain name or a ``prefix-*``; those are matched with a set
    lookup or ``str.startswith``, several times faster than a regular expression, and only
    the rest go through one compiled alternation.

    Attributes:
        patterns: The globs as written.
        everything: Whether one of them is ``*`` (a shortcut: no matching needed).
        exact: The patterns without wildcards.
        prefixes: The prefixes of patterns of the form ``prefix*``.
        regex: One alternation of the remaining patterns, or ``None``.
    """

    patterns: tuple[str, ...]
    everything: bool
    exact: frozenset[str]
    prefixes: tuple[str, ...]
    regex: re.Pattern[str] | None

    @classmethod
    def of(cls, patterns: tuple[str, ...]) -> GlobSet:
        """Compile ``patterns`` (already validated with :func:`glob_problem`)."""
        exact: list[str] = []
        prefixes: list[str] = []
        rest: list[str] = []
        for pattern in patterns:
            if not has_magic(pattern):
                exact.append(pattern)
            elif pattern.endswith("*") and not has_magic(pattern[:-1]):
                prefixes.append(pattern[:-1])
            else:
                rest.append(pattern)
        regex = None
        if rest:
            regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in rest))
        return cls(
            patterns=patterns,
            everything="*" in patterns,
            exact=frozenset(exact),
            prefixes=tuple(prefixes),
            regex=regex,
        )

    def match(self, name: str) -> bool:
        """Whether ``name`` matches any of the globs."""
        if self.everything or name in self.exact:
            return True
        if self.prefixes and name.startswith(self.prefixes):
            return True
        return self.regex is not None and self.regex.match(name) is not None


EVERYTHING = GlobSet.of(("*",))
NOTHING = GlobSet.of(())
