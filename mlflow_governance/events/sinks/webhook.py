"""Webhooks: the CloudEvent POSTed as is, signed with the destination's shared secret.

The signature lets a receiver check that the event comes from us and is fresh:
``X-Governance-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``. The
timestamp is inside the signed text so a captured request cannot be replayed later with a
new time; the receiver compares ``t`` with its clock.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import Any

from mlflow_governance.events.envelope import CONTENT_TYPE
from mlflow_governance.events.sinks._http import post
from mlflow_governance.events.sinks.base import DeliveryError
from mlflow_governance.policy import Notification

SIGNATURE_HEADER = "X-Governance-Signature"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``.

    Args:
        secret: The shared secret.
        body: The exact bytes sent.
        timestamp: Unix seconds, as sent in ``t=``.
    """
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookSink:
    """POSTs each event to one URL.

    Attributes:
        notification: The policy entry this sink delivers for.
    """

    def __init__(self, notification: Notification) -> None:
        if not notification.url:
            raise ValueError("a webhook notification needs a url")
        self.notification = notification
        self.url = notification.url

    @property
    def key(self) -> str:
        """``webhook:<url>``."""
        return f"webhook:{self.url}"

    def wants(self, event_type: str, model: str | None) -> bool:
        """The policy entry's ``events`` and ``models`` globs."""
        return self.notification.wants(event_type, model)

    def _secret(self) -> str | None:
        name = self.notification.secret_env
        if name is None:
            return None
        # Read at each delivery so a rotated secret is picked up by a restarted process
        # without rebuilding the sinks.
        value = os.environ.get(name)
        if not value:
            raise DeliveryError(
                f"webhook {self.url}: the policy signs with the secret in ${name}, but "
                f"{name} is not set (or empty) in the dispatcher's environment"
            )
        return value

    def deliver(self, body: bytes, event: dict[str, Any]) -> None:
        """POST the CloudEvent, signed when the policy names a secret.

        Raises:
            DeliveryError: See :func:`mlflow_governance.events.sinks._http.post`.
        """
        headers = {"Content-Type": CONTENT_TYPE}
        secret = self._secret()
        if secret is not None:
            headers[SIGNATURE_HEADER] = signature(secret, body, int(time.time()))
        post(
            self.url,
            body,
            headers,
            allow_insecure=self.notification.allow_insecure,
            shown=f"webhook {self.url}",
        )
