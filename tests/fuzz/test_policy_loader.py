"""Fuzzing the policy loader: whatever text it is handed, only ``PolicyFileError``.

``tests/policy/test_properties.py`` feeds it random text and random YAML values. Here the
input is nearer to what people and attackers really write:

* YAML-ish text assembled from YAML's own syntax (indentation, ``:``, ``-``, flow
  brackets, anchors, tags, block scalars) around hostile characters (NUL, lone
  surrogates, byte-order and right-to-left marks);
* real policies (``examples/policies/``) with one thing wrong: a field given a value of
  the wrong kind, deleted, misspelt, or joined by an unknown key.

Whatever the input, the loader returns a :class:`Policy` or raises
:class:`PolicyFileError` whose issues each name the file, a line and a field; for a
structurally valid document with one field made wrong, one of the issues names that
field (or the field that refers to it), so the user is sent to the right place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mlflow_governance.exceptions import PolicyFileError, PolicyIssue
from mlflow_governance.policy import Policy, load_policy_text
from tests.fuzz.strategies import HOSTILE_PIECES, fuzz_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
BASES = {
    name: yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))
    for name in ("team", "strict", "cicd")
}
SOURCE = "fuzz.yaml"

Path_ = tuple[str | int, ...]
_SURROGATE = re.compile("[\ud800-\udfff]")

# ----------------------------------------------------------------------- YAML-ish text

_YAML_TOKENS = (
    "version: 1\n",
    "mode: enforce\n",
    "roles:\n",
    "bindings:\n",
    "gates:\n",
    "groups:\n",
    "  ",
    "    ",
    "\t",
    "- ",
    ": ",
    ":",
    "? ",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "&a ",
    "*a",
    "<<: *a",
    "!!python/object:os.system ",
    "!!binary ",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!timestamp ",
    "!!null ",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "#",
    "'",
    '"',
    "\n",
    "required: ",
    "expire_after: ",
    "role: ",
    "principals: ",
    "models: ",
    "1e309",
    "-.inf",
    ".nan",
    "99999999999999999999999999",
    "0x7fffffffffffffffff",
    "~",
    "null",
    "yes",
    "no",
    "'*'",
    "admin",
    "production",
)

yamlish = st.lists(
    st.one_of(st.sampled_from(_YAML_TOKENS), st.sampled_from(HOSTILE_PIECES)),
    max_size=40,
).map("".join)


def _assert_precise(error: PolicyFileError, *, parsed: bool) -> None:
    """Every issue says where (file, line when known) and which field."""
    assert error.issues, "a PolicyFileError with no issue tells the user nothing"
    for issue in error.issues:
        assert issue.file == SOURCE
        assert issue.field, issue
        assert issue.message.strip(), issue
        assert issue.line >= 0 and issue.column >= 0, issue
        if parsed:
            assert issue.line >= 1, f"a parsed document's issue has no line: {issue}"
    # The message a CLI or the server prints is built from them without failing.
    assert str(error).startswith("Invalid policy:")


@fuzz_settings(max_examples=300)
@given(text=yamlish)
def test_yamlish_text_gives_a_policy_or_a_policy_file_error(text: str) -> None:
    try:
        policy = load_policy_text(text, source=SOURCE)
    except PolicyFileError as error:
        _assert_precise(error, parsed=False)
    else:
        assert isinstance(policy, Policy)


# ----------------------------------------------------------------------- wrong documents

#: Values of every YAML kind, for fields that expect another one. (No lone surrogates:
#: the dumper escapes them as ``"\ud800"``, which YAML itself refuses to read back.)
_TEXT = st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=12)).filter(
    lambda text: not _SURROGATE.search(text)
)
_WRONG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -0.0, 0.5]),
    _TEXT,
    st.lists(st.sampled_from([1, "x", None, True]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "role", "*", "1"]), st.integers(), max_size=2),
)


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every path to a value inside the document (the root excluded)."""
    found: list[Path_] = []
    items: list[tuple[str | int, Any]] = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    for key, child in items:
        path = (*prefix, key)
        found.append(path)
        found.extend(_paths(child, path))
    return found


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _copy(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_copy(value) for value in node]
    return node


def _parent(doc: Any, path: Path_) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _field(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@st.composite
def wrong_documents(draw: st.DrawFn) -> tuple[dict[str, Any], Path_, str]:
    """A real policy with one field made wrong: (document, where, how)."""
    doc = _copy(BASES[draw(st.sampled_from(sorted(BASES)))])
    path = draw(st.sampled_from(_paths(doc)))
    parent = _parent(doc, path)
    key = path[-1]
    how = draw(st.sampled_from(["replace", "delete", "misspell", "extra"]))
    if how == "replace":
        parent[key] = draw(_WRONG_VALUES)
    elif how == "delete":
        del parent[key]
    elif how == "misspell" and isinstance(key, str):
        parent[key + draw(st.sampled_from(["_", "s", "\u200b", "\x00"]))] = parent.pop(key)
    elif isinstance(parent, dict):
        how = "extra"
        parent[draw(st.sampled_from(["unknown", "Roles", "role ", "\u202erole"]))] = 1
    else:
        how = "extra"
        parent.append(draw(_WRONG_VALUES))
    return doc, path, how


#: Sections whose entries name each other: a change in one may be reported in another.
_CROSS_REFERENCED = frozenset({"groups", "roles", "bindings", "gates"})


def _related(issue: PolicyIssue, path: Path_) -> bool:
    """Whether an issue is about the changed field: at it, inside it, or naming it.

    A missing or misspelt entry is reported on the mapping or list that should hold it;
    a deleted role, group or gate where something names it (a binding's ``role``, a
    gate's ``approver_roles``, a role's ``approve:<gate>``); a deleted binding or group
    where a gate's approvals can no longer be given.
    """
    changed = _field(path)
    if issue.field.startswith(changed):
        return True
    if issue.field == (_field(path[:-1]) or "(file)"):
        return True  # the mapping or list that lost (or misspells) an entry
    if changed.startswith(issue.field) and str(path[-1]) in issue.message:
        return True
    section = issue.field.split(".", 1)[0].split("[", 1)[0]
    return str(path[0]) in _CROSS_REFERENCED and section in _CROSS_REFERENCED


@fuzz_settings(max_examples=300)
@given(case=wrong_documents())
def test_a_real_policy_with_one_thing_wrong_is_refused_at_that_thing(
    case: tuple[dict[str, Any], Path_, str],
) -> None:
    doc, path, how = case
    # allow_unicode keeps NUL and surrogates as they are; the loader must cope with both.
    text = yaml.dump(doc, allow_unicode=True, sort_keys=False)
    try:
        load_policy_text(text, source=SOURCE)
    except PolicyFileError as error:
        _assert_precise(error, parsed=True)
        issues = [str(issue) for issue in error.issues]
        assert how == "extra" or any(_related(i, path) for i in error.issues), (how, path, issues)


# ----------------------------------------------------------------------- found by the fuzzer

#: Inputs the generators above found that escaped the loader as another exception (and so
#: reached ``POST .../policy`` as an HTTP 500): PyYAML's builders of tagged scalars failing
#: with IndexError, KeyError or AttributeError, and the YAML parser failing to encode half
#: a surrogate pair. Kept as named cases, with where each must be reported.
CRASHERS = {
    "empty-int": ("version: !!int\n", 1, "version", "'!!int' is given no value"),
    "empty-float": ("version: !!float\n", 1, "version", "'!!float' is given no value"),
    "bool-maybe": (
        "version: 1\nmode: !!bool 'maybe'\n",
        2,
        "mode",
        "cannot read 'maybe' as a bool",
    ),
    "timestamp-x": (
        "version: 1\nmode: !!timestamp 'x'\n",
        2,
        "mode",
        "cannot read 'x' as a timestamp",
    ),
    "lone-surrogate": ("version: 1\nmode: \ud800\n", 2, "mode", "holds U+D800"),
}


@pytest.mark.parametrize(
    ("text", "line", "field", "message"), list(CRASHERS.values()), ids=list(CRASHERS)
)
def test_found_inputs_are_refused_as_policy_file_errors(
    text: str, line: int, field: str, message: str
) -> None:
    with pytest.raises(PolicyFileError) as caught:
        load_policy_text(text, source=SOURCE)
    _assert_precise(caught.value, parsed=True)
    assert any(
        (issue.line, issue.field) == (line, field) and message in issue.message
        for issue in caught.value.issues
    ), [str(issue) for issue in caught.value.issues]


def test_a_surrogate_is_reported_in_the_field_holding_it_and_the_rest_is_still_checked() -> None:
    text = "version: 1\nmode: enforce\nroles:\n  r\udc00le: [read, \U0001f525\ud801x]\n"
    with pytest.raises(PolicyFileError) as caught:
        load_policy_text(text, source=SOURCE)
    found = {(i.line, i.column, i.field, i.message[:12]) for i in caught.value.issues}
    assert (4, 4, "roles.r\ufffdle", "holds U+DC00") in found
    assert (4, 17, "roles.r\ufffdle[1]", "holds U+D801") in found
    # The permission the surrogate broke is checked too, as any other would be.
    assert any(
        i.field == "roles.r\ufffdle[1]" and "unknown permission" in i.message
        for i in caught.value.issues
    )
    # A hostile text full of them gives a bounded answer, quickly.
    with pytest.raises(PolicyFileError) as many:
        load_policy_text("version: 1\nmode: " + "\ud800" * 200_000 + "\n", source=SOURCE)
    assert len(many.value.issues) <= 25
    assert "more further on" in str(many.value)
