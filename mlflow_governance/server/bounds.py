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
from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_governance.exceptions import InvalidRequest
from mlflow_governance.inputs import (
    INTEGER_TEXT,
    MAX_DIGITS,
    MAX_INT64,
    MAX_VERSION,
    parse_id,
    parse_int,
    shown,
)

#: Unquoted numbers in a search filter (quoted strings are removed before matching).
_FILTER_NUMBER = re.compile(r"(?<![\w.])[+-]?\d+(?![\w.])")
_FILTER_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`")

#: Registry routes whose ``version`` names an existing model version.
_VERSION_PARAM = "version"
_SEARCH_ENDPOINTS = frozenset({"_search_model_versions", "_search_registered_models"})


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


def wire_checkpoint(raw: Any) -> Mapping[str, Any] | str | None:
    """A checkpoint from a request body, its integers bounded.

    A checkpoint is the object ``POST audit/checkpoint`` returned (or its file's text, as
    the remote CLI sends one it cannot parse). Its ``rows`` and ``head_id`` are compared
    with the table's ids, so a number no column holds (``1e999``, ``2**70``, ``true``) is
    refused here; anything that is not an object is handed on as JSON text, which the
    service refuses with what a checkpoint looks like.

    Raises:
        InvalidRequest: ``rows`` or ``head_id`` is not a whole number from 0 to 2**63-1.
    """
    if raw is None or isinstance(raw, str):
        return raw
    if not isinstance(raw, dict):
        return json.dumps(raw)
    for key in ("rows", "head_id"):
        if key in raw:
            parse_int(raw[key], f"checkpoint {key}", minimum=0)
    return raw


def _version_problem(raw: Any) -> str | None:
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, str) and not INTEGER_TEXT.fullmatch(raw.strip()):
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
        if len(token.lstrip("+-")) > MAX_DIGITS or abs(int(token)) > MAX_INT64:
            return (
                f"filter: the number {shown(token)} does not fit a 64-bit integer "
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
