"""Parsing and printing of the small value languages inside a policy: durations, metrics."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from mlflow_governance.policy.model import MetricCondition

DURATION_FORM = "a number and a unit s, m, h, d or w, e.g. 90s, 30m, 72h, 7d, or 1h30m"
METRIC_FORM = "an operator (>=, >, <=, <, ==, !=) and a number, e.g. '>= 0.95'"

#: The longest duration a policy may give. Ten years is far beyond any sensible approval
#: lifetime, and it keeps every later ``now - duration`` far from the limits of
#: ``datetime`` (a duration of 99999999999d would overflow ``timedelta`` itself).
MAX_DURATION = timedelta(days=3650)
MAX_DURATION_TEXT = "3650d (10 years)"

# More digits than any duration under the bound can need, in any unit.
_MAX_DIGITS = 12
_TOO_LONG = 10**_MAX_DIGITS * 604800
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d+[wdhms])+\Z")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
# Longest operators first so ">=" is not read as ">" followed by "= 0.9".
_METRIC = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\Z")


def _duration_seconds(text: str) -> int | None:
    # Whole seconds as a Python int, which never overflows: the bound is checked on this
    # number before anything builds a timedelta from it.
    text = text.strip()
    if not _DURATION.match(text):
        return None
    total = 0
    for digits, unit in _DURATION_PART.findall(text):
        # Python refuses to turn thousands of digits into an int (ValueError); anything
        # that long is over the bound anyway, so say so without converting it.
        if len(digits.lstrip("0")) > _MAX_DIGITS:
            return _TOO_LONG
        total += int(digits) * _UNITS[unit]
    return total


def parse_duration(text: str) -> timedelta | None:
    """Parse ``90s``, ``30m``, ``72h``, ``7d``, ``2w`` or a sum such as ``1h30m``.

    Returns:
        The duration, or ``None`` when the text is not in that form or is longer than
        :data:`MAX_DURATION` (:func:`duration_problem` says which).
    """
    seconds = _duration_seconds(text)
    if seconds is None or seconds > MAX_DURATION.total_seconds():
        return None
    return timedelta(seconds=seconds)


def duration_problem(value: object, describe: str) -> str:
    """Say why ``value`` is not a duration :func:`parse_duration` accepts.

    Args:
        value: The value as written in the file.
        describe: How messages name the value (e.g. ``the text '3 days'``).

    Returns:
        A sentence for the loader's issue.
    """
    seconds = _duration_seconds(value) if isinstance(value, str) else None
    if seconds is not None and seconds > MAX_DURATION.total_seconds():
        return f"{describe} is too long: a duration may be at most {MAX_DURATION_TEXT}"
    return f"{describe} is not a duration; write {DURATION_FORM}"


def format_duration(value: timedelta) -> str:
    """Print a duration in the form :func:`parse_duration` reads, with the largest units."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    # Weeks are left out on purpose: "7d" reads better than "1w" in a review.
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def parse_metric(text: str) -> MetricCondition | None:
    """Parse a metric condition such as ``">= 0.95"`` or ``"< 200"``.

    Returns:
        The condition, or ``None`` when the text is not in that form.
    """
    match = _METRIC.match(text)
    if not match:
        return None
    threshold = float(match.group(2))
    if not math.isfinite(threshold):
        return None
    return MetricCondition(match.group(1), threshold)
