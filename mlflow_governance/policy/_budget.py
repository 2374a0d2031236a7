"""Budgets a policy's YAML text must fit before it is expanded: size, depth and aliases.

YAML aliases let a few hundred bytes stand for billions of values (the "billion laughs"
attack): nine anchors, each a list of ten aliases to the one before, expand to 10^9
strings. PyYAML composes such a document cheaply, since an alias is one shared node, but
everything that walks the result, our position walker included, sees every expansion and
runs out of memory or time. Deep nesting does the same to the recursion limit.

:func:`check_budget` therefore reads the event stream once, before any node is built,
keeping for each anchor how many values it stands for. The running count is exactly the
size of the fully expanded document, so the alias that would take it over the budget is
found without expanding anything, and named with its line and column.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

#: The largest policy text accepted, in bytes (UTF-8). Real policies are a few kilobytes.
MAX_BYTES = 1024 * 1024
#: The most values a document may hold once its aliases are expanded.
MAX_VALUES = 100_000
#: The most aliases (``*name``) a document may use.
MAX_ALIASES = 1_000
#: The deepest nesting of mappings and lists; a policy needs about six levels.
MAX_DEPTH = 64

_PathPart = str | int


class BudgetExceeded(Exception):
    """The text does not fit a budget; raised before anything is expanded.

    Attributes:
        path: Where in the document the offending node sits (empty for the whole text).
        line: 1-based line of the offending node, or 0 for the whole text.
        column: 1-based column, or 0.
        message: What is wrong and what the limit is.
    """

    def __init__(self, path: tuple[_PathPart, ...], line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column
        self.message = message


@dataclass
class _Open:
    """A mapping or list whose end event has not been read yet."""

    path: tuple[_PathPart, ...]
    anchor: str | None
    start_count: int
    mapping: bool
    expecting_key: bool = True
    key: _PathPart = "?"
    index: int = 0


def text_size_problem(size: int) -> str | None:
    """Say why a text of ``size`` bytes is refused, or ``None`` when it is within budget."""
    if size <= MAX_BYTES:
        return None
    return (
        f"the policy is {size:,} bytes; the limit is {MAX_BYTES:,} bytes (1 MiB), far more "
        "than any real policy needs"
    )


def check_budget(text: str, loader: type[yaml.SafeLoader]) -> None:
    """Refuse ``text`` when it is too large, too deep or expands too far through aliases.

    Args:
        text: The YAML source.
        loader: The loader class whose parser reads the events (libyaml's when present).

    Raises:
        BudgetExceeded: With the position of the offending node and the limit.
        yaml.YAMLError: The text is not well-formed YAML.
    """
    # Characters never outnumber UTF-8 bytes, so most texts skip the encoding copy.
    if len(text) * 4 > MAX_BYTES:
        problem = text_size_problem(len(text.encode("utf-8", "surrogatepass")))
        if problem:
            raise BudgetExceeded((), 0, 0, problem)
    sizes: dict[str, int] = {}
    stack: list[_Open] = []
    count = 0
    aliases = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
            path = _next_path(stack)
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                size = sizes.get(event.anchor or "", 1)
                if aliases > MAX_ALIASES:
                    raise _at(
                        event,
                        path,
                        f"alias *{event.anchor} is alias number {aliases:,}; a policy may use "
                        f"at most {MAX_ALIASES:,} aliases",
                    )
                if count + size > MAX_VALUES:
                    raise _at(
                        event,
                        path,
                        f"alias *{event.anchor} stands for {size:,} values, which would expand "
                        f"the document past the limit of {MAX_VALUES:,} values (an alias bomb?)",
                    )
            else:
                size = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            count += size
            if count > MAX_VALUES:
                raise _at(event, path, f"the document holds more than {MAX_VALUES:,} values")
            _done(stack, event)
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            path = _next_path(stack)
            if len(stack) >= MAX_DEPTH:
                raise _at(
                    event, path, f"nested more than {MAX_DEPTH} levels deep; that is the limit"
                )
            count += 1
            mapping = isinstance(event, yaml.MappingStartEvent)
            stack.append(_Open(path, event.anchor, count - 1, mapping))
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            closed = stack.pop()
            if closed.anchor:
                # Everything counted since the collection opened is what its alias repeats.
                sizes[closed.anchor] = count - closed.start_count
            _done(stack, None)


def _next_path(stack: list[_Open]) -> tuple[_PathPart, ...]:
    if not stack:
        return ()
    top = stack[-1]
    if not top.mapping:
        return (*top.path, top.index)
    # A key is reported at the mapping holding it, its value at the key's path.
    return top.path if top.expecting_key else (*top.path, top.key)


def _done(stack: list[_Open], event: yaml.Event | None) -> None:
    """Advance the enclosing collection past the node just finished."""
    if not stack:
        return
    top = stack[-1]
    if not top.mapping:
        top.index += 1
    elif top.expecting_key:
        top.key = event.value if isinstance(event, yaml.ScalarEvent) else "?"
        top.expecting_key = False
    else:
        top.expecting_key = True


def _at(event: yaml.Event, path: tuple[_PathPart, ...], message: str) -> BudgetExceeded:
    mark = event.start_mark
    if mark is None:  # every parser event carries a mark; the type allows none
        return BudgetExceeded(path, 0, 0, message)
    return BudgetExceeded(path, mark.line + 1, mark.column + 1, message)
