"""YAML parsing that remembers where every value came from and notices duplicate keys.

PyYAML's ``safe_load`` returns plain Python objects with no positions, and silently keeps
the last of two equal keys in a mapping. A policy file is edited by hand and reviewed in
pull requests, so a repeated ``required:`` that quietly wins is exactly the mistake the
validator must catch, and every issue must point at a line. We therefore compose the node
graph with a private ``SafeLoader`` subclass and walk it ourselves, recording the position
of every value and every mapping key by its path in the document.

A policy may also come from someone hostile (``policy apply`` takes any file, and the
server validates what it is sent), so the text is first measured against fixed budgets
(:mod:`mlflow_governance.policy._budget`) before anything expands its aliases.
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from mlflow_governance.policy._budget import check_budget

PathPart = str | int
Path = tuple[PathPart, ...]


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in the source text."""

    line: int
    column: int


@dataclass(frozen=True)
class Duplicate:
    """A mapping key that appears more than once.

    Attributes:
        path: The path of the mapping holding the key.
        key: The repeated key.
        first: Where the key first appears.
        again: Where it appears again.
    """

    path: Path
    key: str
    first: Position
    again: Position


@dataclass(frozen=True)
class ParsedDocument:
    """The plain data of a YAML document plus where each part of it sits.

    Attributes:
        data: The document as dicts, lists and scalars (``None`` for an empty document).
        values: The position where the value at each path starts.
        keys: The position of the key of each mapping entry, by the entry's path.
        duplicates: Every repeated key, in document order.
        problems: Structural problems found while walking (non-string keys, recursion).
    """

    data: object
    values: Mapping[Path, Position] = field(default_factory=dict)
    keys: Mapping[Path, Position] = field(default_factory=dict)
    duplicates: tuple[Duplicate, ...] = ()
    problems: tuple[tuple[Path, Position, str], ...] = ()


# libyaml's parser is an order of magnitude faster than the pure-Python one and keeps the
# same node marks; PyYAML builds without it still work, just slower.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _PositionLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """A SafeLoader of our own, so nothing we do touches PyYAML's shared class tables."""


def _position(mark: yaml.Mark) -> Position:
    # PyYAML marks are 0-based; editors and error messages count from 1.
    return Position(mark.line + 1, mark.column + 1)


#: What PyYAML's safe scalar builders raise on text their tag cannot hold (see _scalar).
_SCALAR_BUILD_ERRORS = (ValueError, OverflowError, IndexError, KeyError, AttributeError)

#: What each standard tag accepts, for the message that refuses a value.
_TAG_FORMS = {
    "int": "a whole number such as 3, -2 or 0x1f",
    "float": "a number such as 0.5, 1e3 or .inf",
    "bool": "true, false, yes, no, on or off",
    "timestamp": "a date such as 2024-01-31 or a time such as 2024-01-31T12:00:00Z",
}

_QUOTE_LIMIT = 80

_SURROGATE = re.compile("[\ud800-\udfff]")
#: Surrogates reported one by one; a hostile text may hold a million.
_SURROGATES_SHOWN = 20
#: The line breaks YAML counts (and so its marks): CR LF, LF, CR, NEL, LS and PS.
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


def _scalar_problem(node: yaml.Node, exc: Exception) -> str:
    kind = str(node.tag).rsplit(":", 1)[-1]
    text = str(node.value)
    if kind == "int" and len(text) > sys.get_int_max_str_digits() > 0:
        return f"a whole number of {len(text):,} characters is too long"
    form = _TAG_FORMS.get(kind)
    if not text.strip():
        expected = f"; write {form}" if form else ""
        return f"'!!{kind}' is given no value{expected}, or drop the tag"
    quoted = text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."
    if isinstance(exc, ValueError) and kind == "timestamp":
        reason = str(exc)  # Python's date() says what is wrong: ``month must be in 1..12``
    elif form:
        # The other errors tell only how PyYAML failed (``string index out of range``).
        reason = f"expected {form}"
    else:
        reason = str(exc)
    article = "an" if kind[:1] in ("a", "e", "i", "o", "u") else "a"
    return f"cannot read '{quoted}' as {article} {kind}: {reason}"


class _Walker:
    """Turns a composed node graph into plain data, collecting positions on the way."""

    def __init__(self, loader: _PositionLoader) -> None:
        self.loader = loader
        self.values: dict[Path, Position] = {}
        self.keys: dict[Path, Position] = {}
        self.duplicates: list[Duplicate] = []
        self.problems: list[tuple[Path, Position, str]] = []
        # Anchors let one node appear at several paths; a node that contains itself
        # would make the walk endless, so we track the nodes on the current branch.
        self._active: set[int] = set()
        # flatten_mapping rewrites node.value in place, so a node reached twice through
        # an alias must reuse the key list seen the first time.
        self._own_pairs: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}

    def walk(self, node: yaml.Node, path: Path) -> object:
        self.values.setdefault(path, _position(node.start_mark))
        if id(node) in self._active:
            self.problems.append((path, _position(node.start_mark), "an alias refers to itself"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.Node, path: Path) -> object:
        try:
            return self.loader.construct_object(node, deep=True)
        except _SCALAR_BUILD_ERRORS as exc:
            # PyYAML builds tagged scalars with bare Python: ``!!int`` with no value indexes
            # an empty string, ``!!bool 'maybe'`` misses its lookup table, ``!!timestamp
            # 'x'`` calls a method on a failed match, and Python's own int() and date()
            # refuse ``2001-13-45`` or thousands of digits. Any of them is a bad value at
            # this node, to be reported like every other, never an error of the loader.
            self.problems.append((path, _position(node.start_mark), _scalar_problem(node, exc)))
            return None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, object]:
        own = self._own_pairs.get(id(node))
        if own is None:
            own = list(node.value)
            self._own_pairs[id(node)] = own
            # Resolves YAML merge keys (``<<: *defaults``); merged entries come first
            # so the mapping's own entries override them, as YAML intends.
            self.loader.flatten_mapping(node)
        own_ids = {id(key) for key, _ in own}
        result: dict[str, object] = {}
        seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            key_position = _position(key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append((path, key_position, "a mapping key must be a plain name"))
                continue
            # The raw text, not the resolved scalar: a group called ``on`` or ``yes`` must
            # stay a name rather than become ``True``.
            key = str(key_node.value)
            if id(key_node) in own_ids:
                if key in seen:
                    self.duplicates.append(Duplicate(path, key, seen[key], key_position))
                else:
                    seen[key] = key_position
            entry = (*path, key)
            self.keys[entry] = key_position
            self.values[entry] = _position(value_node.start_mark)
            result[key] = self.walk(value_node, entry)
        return result


def parse_yaml(text: str) -> ParsedDocument:
    """Parse one YAML document, keeping positions and reporting duplicate keys.

    Args:
        text: The YAML source.

    Returns:
        The parsed document; ``data`` is ``None`` when the text holds no document.

    Raises:
        yaml.YAMLError: The text is not well-formed YAML (the error carries a mark).
        BudgetExceeded: The text is too large, too deep or expands to too much through
            its aliases; nothing has been expanded yet.
    """
    surrogates = [(match.start(), match.group()) for match in _SURROGATE.finditer(text)]
    if surrogates:
        # Half of a UTF-16 pair is a valid Python character (JSON's "\ud800" gives one)
        # but no UTF-8 text can hold it, and the YAML parser fails encoding it. Each one is
        # reported where it stands; a stand-in of the same length keeps every position
        # true so the rest of the file is still checked.
        text = _SURROGATE.sub("\ufffd", text)
    check_budget(text, _PositionLoader)
    loader = _PositionLoader(text)
    try:
        node = loader.get_single_node()
        walker = _Walker(loader)
        data = None if node is None else walker.walk(node, ())
    finally:
        loader.dispose()
    problems = _surrogate_problems(text, surrogates, walker) if surrogates else []
    return ParsedDocument(
        data=data,
        values=walker.values,
        keys=walker.keys,
        duplicates=tuple(walker.duplicates),
        problems=(*problems, *walker.problems),
    )


def _surrogate_problems(
    text: str, surrogates: list[tuple[int, str]], walker: _Walker
) -> list[tuple[Path, Position, str]]:
    """One problem per surrogate (the first few), at its line and in the field holding it."""
    line_starts = [0, *(match.end() for match in _LINE_BREAK.finditer(text))]
    # The key or value that starts last before a character is the one holding it; at one
    # position (a list item and its first key) the deeper path is the more precise.
    holders = sorted(
        ((at.line, at.column, len(path)), path)
        for path, at in (*walker.keys.items(), *walker.values.items())
    )
    starts = [start for start, _ in holders]
    problems: list[tuple[Path, Position, str]] = []
    for index, char in surrogates[:_SURROGATES_SHOWN]:
        line = bisect.bisect_right(line_starts, index)
        position = Position(line, index - line_starts[line - 1] + 1)
        holder = bisect.bisect_right(starts, (line, position.column, len(text))) - 1
        path = holders[holder][1] if holder >= 0 else ()
        problem = (
            f"holds U+{ord(char):04X}, half of a UTF-16 surrogate pair, which no UTF-8 text "
            "can hold; remove it or write the whole character it was part of"
        )
        problems.append((path, position, problem))
    hidden = len(surrogates) - _SURROGATES_SHOWN
    if hidden > 0:
        path, position, problem = problems[-1]
        problems[-1] = (path, position, f"{problem} ({hidden:,} more further on)")
    return problems
