"""Waiting for a promotion on the caller's side: the server never holds a request open.

``promote`` is one step on the service (apply, or open the request). Waiting polls the
request, applies it once approved, and reports progress at most every ``report_every``
seconds, so a CI log shows what the gate still needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlflow_governance.access import Access
from mlflow_governance.exceptions import Conflict, TimedOut
from mlflow_governance.workflow.tables import APPLIED, APPROVED, OPEN_STATES

#: How often progress is reported at most, in seconds.
REPORT_EVERY = 10.0


def wait_for_promotion(
    access: Access,
    first: dict[str, Any],
    *,
    model: str,
    version: int,
    to: str,
    timeout: float,
    poll_interval: float = 2.0,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the promotion ``first`` started is applied, closed, or time runs out.

    Args:
        access: Where the actions go.
        first: The result of the ``promote`` call that opened (or found) the request.
        model: The model.
        version: The version.
        to: The target, as given to ``promote``.
        timeout: Seconds to wait in all.
        poll_interval: Seconds between polls.
        progress: Called with a line saying what the gate still needs.
        clock: Monotonic clock (replaceable in tests).
        pause: Sleeps between polls (replaceable in tests).

    Returns:
        The last result, with status ``applied``.

    Raises:
        Conflict: The request was rejected, cancelled, expired or superseded.
        TimedOut: ``timeout`` passed first.
    """
    result = first
    start = clock()
    deadline = start + timeout
    reported_at = float("-inf")
    while result["status"] != APPLIED:
        request = result.get("request") or {}
        if request.get("state") not in OPEN_STATES:
            raise Conflict(
                f"Request #{request.get('id', '?')} is {request.get('state', 'gone')}; "
                f"{model} version {version} was not moved to {to}."
            )
        now = clock()
        needs = request.get("needs") or request["state"]
        line = f"Waiting for request #{request['id']} ({int(now - start)}s): {needs}"
        if progress is not None and now - reported_at >= REPORT_EVERY:
            progress(line)
            reported_at = now
        if now >= deadline:
            raise TimedOut(
                f"Timed out after {timeout:g}s waiting for request #{request['id']} "
                f"({needs}). The request stays open: run the same promote again later, or "
                f"see 'mlflow-governance requests --model {model}'."
            )
        pause(min(poll_interval, max(0.0, deadline - now)))
        current = access.get_request(int(request["id"]))
        if current["state"] == APPROVED:
            result = access.promote(model, version, to)
        else:
            status = APPLIED if current["state"] == APPLIED else current["state"]
            result = {**result, "status": status, "request": current}
    return result
