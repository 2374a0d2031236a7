"""Typed reading of parsed YAML that records every problem instead of stopping at the first.

A user fixing a policy file wants the whole list at once, so each reader returns ``None``
on a bad value, records a :class:`PolicyIssue` pinned to the value's line and column, and
lets validation go on with the rest of the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from mlflow_governance.exceptions import PolicyIssue
from mlflow_governance.policy._yaml import ParsedDocument, Path, Position
from mlflow_governance.policy.permissions import glob_problem

_QUOTE_LIMIT = 80


def field_name(path: Path) -> str:
    """Print a path the way users write it: ``gates.production.approvals.required``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(file)"


def describe(value: object) -> str:
    """Name the kind of a YAML value for messages (``a number``, ``a list`` ...)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"the number {shorten(str(value))}"
    if isinstance(value, str):
        return f"the text '{shorten(value)}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def shorten(text: str) -> str:
    """Shorten a word of the file for a message: a hostile file may hold a megabyte in one."""
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def _suggestion(word: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, valid, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class Reader:
    """Reads values out of a parsed document, collecting issues with their positions.

    Attributes:
        issues: Every problem found so far.
    """

    def __init__(self, document: ParsedDocument, source: str) -> None:
        self.document = document
        self.source = source
        self.issues: list[PolicyIssue] = []

    def add(
        self,
        path: Path,
        message: str,
        valid: Sequence[str] = (),
        *,
        at_key: bool = False,
        position: Position | None = None,
    ) -> None:
        """Record an issue at ``path`` (at its key rather than its value if ``at_key``)."""
        where = position or self._position(path, at_key=at_key)
        self.issues.append(
            PolicyIssue(
                file=self.source,
                line=where.line if where else 0,
                column=where.column if where else 0,
                field=field_name(path),
                message=message,
                valid=tuple(valid),
            )
        )

    def _position(self, path: Path, *, at_key: bool) -> Position | None:
        if at_key and path in self.document.keys:
            return self.document.keys[path]
        # A missing field has no position of its own: point at the mapping it belongs in.
        for end in range(len(path), -1, -1):
            found = self.document.values.get(path[:end])
            if found is not None:
                return found
        return None

    def mapping(
        self, path: Path, value: object, keys: Sequence[str] | None = None, *, what: str = ""
    ) -> dict[str, object] | None:
        """A mapping; with ``keys``, any other key is reported with the valid ones."""
        if not isinstance(value, dict):
            self.add(
                path, f"expected a mapping{f' of {what}' if what else ''}, got {describe(value)}"
            )
            return None
        if keys is not None:
            for key in value:
                if key not in keys:
                    hint = _suggestion(key, keys)
                    message = f"unknown key '{shorten(key)}'{hint}"
                    self.add((*path, key), message, keys, at_key=True)
        return value

    def required(self, path: Path, data: dict[str, object], key: str, example: str) -> bool:
        """Whether ``key`` is present in ``data``; records an issue when it is not."""
        if key in data:
            return True
        self.add(path, f"missing required key '{key}', e.g. {example}")
        return False

    def string(self, path: Path, value: object) -> str | None:
        """A non-empty string."""
        if isinstance(value, str) and value.strip():
            return value
        self.add(path, f"expected a non-empty text, got {describe(value)}")
        return None

    def integer(self, path: Path, value: object, *, minimum: int = 0) -> int | None:
        """An integer of at least ``minimum`` (booleans are refused though Python allows them)."""
        if not isinstance(value, int) or isinstance(value, bool):
            self.add(path, f"expected a whole number, got {describe(value)}")
            return None
        if value < minimum:
            self.add(path, f"must be at least {minimum}, got {value}")
            return None
        return value

    def boolean(self, path: Path, value: object) -> bool | None:
        """``true`` or ``false``."""
        if isinstance(value, bool):
            return value
        self.add(path, f"expected true or false, got {describe(value)}", ("true", "false"))
        return None

    def string_items(self, path: Path, value: object, *, what: str) -> list[tuple[int, str]] | None:
        """A list of non-empty strings, each with its index (bad items are reported, dropped)."""
        if not isinstance(value, list):
            self.add(path, f"expected a list of {what}, got {describe(value)}")
            return None
        items = []
        for i, item in enumerate(value):
            text = self.string((*path, i), item)
            if text is not None:
                items.append((i, text))
        return items

    def string_list(self, path: Path, value: object, *, what: str) -> tuple[str, ...] | None:
        """A list of non-empty strings (bad items are reported and dropped)."""
        items = self.string_items(path, value, what=what)
        return None if items is None else tuple(text for _, text in items)

    def choice(self, path: Path, value: object, valid: Sequence[str], *, what: str) -> str | None:
        """One of ``valid``; ``what`` names the kind of value for the message."""
        if isinstance(value, str) and value in valid:
            return value
        if isinstance(value, str):
            self.add(path, f"unknown {what} '{shorten(value)}'{_suggestion(value, valid)}", valid)
        else:
            self.add(path, f"expected a {what}, got {describe(value)}", valid)
        return None

    def globs(self, path: Path, value: object, *, what: str) -> tuple[str, ...] | None:
        """A list of fnmatch-style globs, each checked for balanced brackets."""
        items = self.string_items(path, value, what=what)
        if items is None:
            return None
        good = []
        for i, text in items:
            problem = glob_problem(text)
            if problem:
                self.add((*path, i), f"bad glob: {problem}")
            else:
                good.append(text)
        return tuple(good)
