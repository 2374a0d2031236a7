"""Parsing and printing of the small value languages inside a policy: durations, metrics."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from mlflow_governance.policy.model import MetricCondition

DURATION_FORM = "a number and a unit s, m, h, d or w, e.g. 90s, 30m, 72h, 7d, or 1h30m"
METRIC_FORM = "an operator (>=, >, <=, <, ==, !=) and a number, e.g. '>= 0.95'"

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d+[wdhms])+\Z")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
# Longest operators first so ">=" is not read as ">" followed by "= 0.9".
_METRIC = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\Z")


def parse_duration(text: str) -> timedelta | None:
    """Parse ``90s``, ``30m``, ``72h``, ``7d``, ``2w`` or a sum such as ``1h30m``.

    Returns:
        The duration, or ``None`` when the text is not in that form.
    """
    text = text.strip()
    if not _DURATION.match(text):
        return None
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Print a duration in the form :func:`parse_duration` reads, with the largest units."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    # Weeks are left out on purpose: "7d" reads better than "1w" in a review.
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


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
