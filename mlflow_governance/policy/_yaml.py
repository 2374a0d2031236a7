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
        except (ValueError, OverflowError) as exc:
            # PyYAML builds dates and integers with Python's own constructors, which raise
            # ValueError for `2001-13-45` or an integer of thousands of digits; report the
            # value instead of letting the error escape the loader.
            if node.tag.endswith(":int"):
                problem = f"a whole number of {len(str(node.value)):,} characters is too long"
            else:
                problem = f"cannot read '{node.value}' as a {node.tag.rsplit(':', 1)[-1]}: {exc}"
            self.problems.append((path, _position(node.start_mark), problem))
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
    check_budget(text, _PositionLoader)
    loader = _PositionLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return ParsedDocument(data=None)
        walker = _Walker(loader)
        data = walker.walk(node, ())
    finally:
        loader.dispose()
    return ParsedDocument(
        data=data,
        values=walker.values,
        keys=walker.keys,
        duplicates=tuple(walker.duplicates),
        problems=tuple(walker.problems),
    )
