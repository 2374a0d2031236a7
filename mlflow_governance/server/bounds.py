"""Integers from the wire, bounded before they reach a database.

Python's ``int`` has no limit, the databases' columns do: an id or version beyond them
makes SQLite raise ``OverflowError`` ("Python int too large to convert to SQLite
INTEGER") and PostgreSQL or MySQL an out-of-range error, which MLflow's handlers answer
with HTTP 500 or an HTML error page. Every integer a caller sends to the routes this app
serves (the governance API and page, and MLflow's registry routes) is checked here first
and refused with HTTP 400 ``INVALID_PARAMETER_VALUE`` when it cannot be stored, whatever
the store behind it does.

The bounds are the columns': a model version is MLflow's ``model_versions.version``
(a 32-bit ``INTEGER``); a request id, an offset or a filter's number fits a 64-bit
``BIGINT``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from typing import Any

from mlflow_governance.exceptions import InvalidRequest

#: The largest model version MLflow's ``model_versions.version`` column holds.
MAX_VERSION = 2**31 - 1
#: The largest value of a signed 64-bit column (request ids, offsets, timestamps).
MAX_INT64 = 2**63 - 1

_INTEGER_TEXT = re.compile(r"[+-]?\d+")
#: Unquoted numbers in a search filter (quoted strings are removed before matching).
_FILTER_NUMBER = re.compile(r"(?<![\w.])[+-]?\d+(?![\w.])")
_FILTER_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`")
#: Longer than any 64-bit number: refused before ``int()`` spends time on it.
_MAX_DIGITS = 40

#: Registry routes whose ``version`` names an existing model version.
_VERSION_PARAM = "version"
_SEARCH_ENDPOINTS = frozenset({"_search_model_versions", "_search_registered_models"})


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
    number = _as_int(value)
    if number is None:
        raise InvalidRequest(f"{name} must be an integer, got {_shown(value)}.")
    low = minimum if minimum is not None else -maximum - 1
    if not low <= number <= maximum:
        raise InvalidRequest(
            f"{name} must be an integer from {low} to {maximum}, got {_shown(value)}."
        )
    return number


def parse_id(value: Any, name: str, *, maximum: int = MAX_INT64) -> int:
    """A positive id (a request id from a URL path, a version from a body)."""
    return parse_int(value, name, minimum=1, maximum=maximum)


def registry_problem(endpoint: str | None, args: Any, body: Any) -> str | None:
    """Why a request to one of MLflow's registry routes carries an integer no column holds.

    Only numbers are judged: a ``version`` that is not a number at all is left to MLflow,
    whose own message the stock client expects.

    Args:
        endpoint: The Flask endpoint (MLflow's handler name, e.g. ``_get_model_version``).
        args: The query string (a mapping).
        body: The parsed JSON body, or None.

    Returns:
        The message of the 400 answer, or None when every integer fits.
    """
    for source in (args, body if isinstance(body, dict) else {}):
        problem = _version_problem(source.get(_VERSION_PARAM))
        if problem is None and endpoint in _SEARCH_ENDPOINTS:
            problem = _filter_problem(source.get("filter")) or _page_token_problem(
                source.get("page_token")
            )
        if problem is not None:
            return problem
    return None


def _version_problem(raw: Any) -> str | None:
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, str) and not _INTEGER_TEXT.fullmatch(raw.strip()):
        return None  # not a number: MLflow's own validation answers
    if not isinstance(raw, str | int | float):
        return None
    try:
        parse_id(raw, "version", maximum=MAX_VERSION)
    except InvalidRequest as exc:
        return exc.message
    return None


def _filter_problem(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    for token in _numbers_outside_quotes(raw):
        if len(token.lstrip("+-")) > _MAX_DIGITS or abs(int(token)) > MAX_INT64:
            return (
                f"filter: the number {_shown(token)} does not fit a 64-bit integer "
                f"(at most {MAX_INT64})."
            )
    return None


def _numbers_outside_quotes(text: str) -> Iterator[str]:
    unquoted = _FILTER_QUOTED.sub(" ", text)
    for match in _FILTER_NUMBER.finditer(unquoted):
        yield match.group(0)


def _page_token_problem(raw: Any) -> str | None:
    # MLflow's page token is base64 JSON {"offset": N}; N goes straight into OFFSET.
    # Tokens that do not decode are left to MLflow, which refuses them with a 400.
    if not isinstance(raw, str) or not raw:
        return None
    try:
        token = json.loads(base64.b64decode(raw, validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    offset = token.get("offset") if isinstance(token, dict) else None
    if offset is None:
        return None
    try:
        parse_int(offset, "page_token offset", minimum=0)
    except InvalidRequest:
        return "Invalid page token: its offset is not a position in the results."
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None  # JSON true/false are not numbers, though Python says they are
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # inf and nan fail is_integer(); 1e300 passes and is refused by the bound.
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if not _INTEGER_TEXT.fullmatch(text):
            return None
        if len(text.lstrip("+-")) > _MAX_DIGITS:
            # Out of every bound; not converted (int() of thousands of digits is refused
            # by Python itself, and slow below that limit).
            return -(MAX_INT64 * 2) if text.startswith("-") else MAX_INT64 * 2
        return int(text)
    return None


def _shown(value: Any) -> str:
    """``value`` for a message: quoted, and cut short when an attacker made it long."""
    text = repr(value)
    return text if len(text) <= 48 else f"{text[:40]}... ({len(text)} characters)"
