"""Integers from callers, bounded before they reach a database.

Python's ``int`` has no limit, the databases' columns do: an id or version beyond them
makes SQLite raise ``OverflowError`` and PostgreSQL or MySQL an out-of-range error. Every
integer a caller sends (over REST, the page, the command line or ``GovernanceClient``) is
checked here first and refused with ``InvalidRequest`` when no column could hold it.
"""

from __future__ import annotations

import re
from typing import Any

from mlflow_governance.exceptions import InvalidRequest

#: The largest model version MLflow's ``model_versions.version`` column holds.
MAX_VERSION = 2**31 - 1
#: The largest value of a signed 64-bit column (request ids, offsets, timestamps).
MAX_INT64 = 2**63 - 1

INTEGER_TEXT = re.compile(r"[+-]?\d+")
#: Longer than any 64-bit number: refused before ``int()`` spends time on it.
MAX_DIGITS = 40


def parse_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int = MAX_INT64,
) -> int:
    """An integer parameter: a JSON integer, an integral JSON number or a decimal string.

    Args:
        value: What the caller sent.
        name: The parameter's name, for the message.
        minimum: The smallest value accepted (none by default).
        maximum: The largest value accepted (a signed 64-bit column's by default).

    Returns:
        The integer.

    Raises:
        InvalidRequest: Not an integer, or outside ``[minimum, maximum]``.
    """
    number = as_int(value)
    if number is None:
        raise InvalidRequest(f"{name} must be an integer, got {shown(value)}.")
    low = minimum if minimum is not None else -maximum - 1
    if not low <= number <= maximum:
        raise InvalidRequest(
            f"{name} must be an integer from {low} to {maximum}, got {shown(value)}."
        )
    return number


def parse_id(value: Any, name: str, *, maximum: int = MAX_INT64) -> int:
    """A positive id (a request id from a URL path, a version from a body)."""
    return parse_int(value, name, minimum=1, maximum=maximum)


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None  # JSON true/false are not numbers, though Python says they are
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # inf and nan fail is_integer(); 1e300 passes and is refused by the bound.
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if not INTEGER_TEXT.fullmatch(text):
            return None
        if len(text.lstrip("+-")) > MAX_DIGITS:
            # Out of every bound; not converted (int() of thousands of digits is refused
            # by Python itself, and slow below that limit).
            return -(MAX_INT64 * 2) if text.startswith("-") else MAX_INT64 * 2
        return int(text)
    return None


def shown(value: Any) -> str:
    """``value`` for a message: quoted, and cut short when an attacker made it long."""
    text = repr(value)
    return text if len(text) <= 48 else f"{text[:40]}... ({len(text)} characters)"
