"""The CloudEvents 1.0 envelope (JSON structured mode) of one outbox event."""

from __future__ import annotations

import os
from typing import Any

#: The CloudEvents ``source`` of our events unless the deployment names its server.
DEFAULT_SOURCE = "mlflow-governance"
ENV_SOURCE = "MLFLOW_GOVERNANCE_EVENT_SOURCE"
CONTENT_TYPE = "application/cloudevents+json"


def event_source() -> str:
    """The ``source`` attribute: ``MLFLOW_GOVERNANCE_EVENT_SOURCE``, else the public URL."""
    from mlflow_governance import config

    return os.environ.get(ENV_SOURCE) or config.public_url() or DEFAULT_SOURCE


def envelope(event: dict[str, Any], source: str | None = None) -> bytes:
    """The structured-mode CloudEvent of an outbox event (``events list`` shape).

    ``id`` is the outbox event's stable id, so a redelivery carries the same id and
    consumers can de-duplicate; ``subject`` is the model (and version).
    """
    # cloudevents 2.x keeps the stable 1.x API under cloudevents.v1.
    from cloudevents.v1.conversion import to_structured
    from cloudevents.v1.http import CloudEvent

    subject = event.get("model") or ""
    if event.get("version") is not None:
        subject = f"{subject}/{event['version']}"
    attributes = {
        "id": event["event_id"],
        "source": source or event_source(),
        "type": event["type"],
        "time": event["time"],
        "subject": subject or None,
        "datacontenttype": "application/json",
    }
    cloud_event = CloudEvent({k: v for k, v in attributes.items() if v is not None}, event["data"])
    _headers, body = to_structured(cloud_event)
    return bytes(body)
