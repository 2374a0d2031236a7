"""Slack: one line or two for people, posted to an incoming webhook.

A Slack incoming-webhook URL is itself the credential (anyone holding it can post), so it
never appears in the sink's key or in error messages; a short hash of it stands in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mlflow_governance import config
from mlflow_governance.events.sinks._http import post
from mlflow_governance.policy import Notification


def _subject(data: dict[str, Any]) -> str:
    model = data.get("model") or "?"
    version = data.get("version")
    return f"{model} v{version}" if version is not None else str(model)


def _arrow(data: dict[str, Any]) -> str:
    before, after = data.get("from"), data.get("to") or data.get("target")
    if before and after:
        return f"{before} → {after}"
    return f"→ {after}" if after else ""


def _request(data: dict[str, Any]) -> str:
    return f"Request #{data['request_id']}: " if data.get("request_id") is not None else ""


def _by(data: dict[str, Any]) -> str:
    return f" by {data['actor']}" if data.get("actor") else ""


def _requested(data: dict[str, Any]) -> str:
    missing, roles = data.get("approvals_missing"), data.get("approver_roles")
    if isinstance(missing, int) and missing > 0:
        # Only when the event says so: a guess at the count would mislead an approver.
        plural = "" if missing == 1 else "s"
        needs = f" needs {missing} more approval{plural}"
        if roles:
            needs += f" from {', '.join(roles) if isinstance(roles, list) else roles}"
    else:
        needs = f" requested{_by(data)}"
    return f"{_request(data)}{_subject(data)} {_arrow(data)}{needs}"


def _alias(data: dict[str, Any], verb: str) -> str:
    alias = data.get("alias") or "?"
    return f"Alias @{alias} {verb} {_subject(data)}{_by(data)}"


def _comment(data: dict[str, Any]) -> str:
    return f"\nComment: {data['comment']}" if data.get("comment") else ""


#: One line (two with a comment) per event type, from the event's data.
_MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "model_version.registered": lambda d: f"New version {_subject(d)} registered{_by(d)}",
    "model_version.transitioned": lambda d: f"{_subject(d)} moved {_arrow(d)}{_by(d)}",
    "alias.set": lambda d: _alias(d, "now points to"),
    "alias.deleted": lambda d: _alias(d, "removed from"),
    "promotion.requested": lambda d: _requested(d) + _comment(d),
    "promotion.approved": lambda d: (
        f"{_request(d)}{_subject(d)} {_arrow(d)} approved{_by(d)}{_comment(d)}"
    ),
    "promotion.rejected": lambda d: (
        f"{_request(d)}{_subject(d)} {_arrow(d)} rejected{_by(d)}{_comment(d)}"
    ),
    "promotion.applied": lambda d: f"{_request(d)}{_subject(d)} {_arrow(d)} applied{_by(d)}",
    "policy.applied": lambda d: (
        f"Governance policy {str(d.get('sha256') or '')[:12] or d.get('policy_id') or ''}"
        f" applied{_by(d)}"
    ),
    "access.denied": lambda d: (
        f"Refused: {d.get('actor') or 'someone'} tried {d.get('action') or 'a change'} on "
        f"{_subject(d)}" + (f"\nReason: {d['reason']}" if d.get("reason") else "")
    ),
}


def message(event: dict[str, Any], public_url: str | None = None) -> str:
    """The text of an event for people, with a link to its request when there is one.

    Args:
        event: The event (``events list`` shape: ``type``, ``data`` ...).
        public_url: The server's public base URL; without it there is no link.
    """
    data = event.get("data") or {}
    render = _MESSAGES.get(str(event.get("type")))
    text = render(data) if render else f"{event.get('type')}: {_subject(data)}{_by(data)}"
    # Names and comments come from users: escaped, "<!channel>" or "<https://evil|docs>"
    # in a comment stays text instead of pinging everyone or disguising a link.
    text = _escape(re.sub(r" {2,}", " ", text).strip())
    request_id = data.get("request_id")
    if public_url and request_id is not None:
        text += f"\n<{public_url}/governance/requests/{request_id}|Open request #{request_id}>"
    return text


def _escape(text: str) -> str:
    """Slack's three control characters as the entities Slack documents for them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackSink:
    """Posts a short message per event to a Slack incoming webhook.

    Attributes:
        notification: The policy entry this sink delivers for.
    """

    def __init__(self, notification: Notification) -> None:
        if not notification.url:
            raise ValueError("a slack notification needs a url")
        self.notification = notification
        self.url = notification.url
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        self._shown = f"slack {urlsplit(self.url).hostname or '?'}#{digest}"

    @property
    def key(self) -> str:
        """``slack:<host>#<hash of the URL>``: stable, and no secret in the outbox."""
        return self._shown.replace("slack ", "slack:", 1)

    def wants(self, event_type: str, model: str | None) -> bool:
        """The policy entry's ``events`` and ``models`` globs."""
        return self.notification.wants(event_type, model)

    def deliver(self, body: bytes, event: dict[str, Any]) -> None:
        """Post the event's message (``body``, the CloudEvent, is for machines).

        Raises:
            DeliveryError: See :func:`mlflow_governance.events.sinks._http.post`.
        """
        payload = json.dumps({"text": message(event, config.public_url())}).encode()
        post(
            self.url,
            payload,
            {"Content-Type": "application/json"},
            allow_insecure=self.notification.allow_insecure,
            shown=self._shown,
        )
