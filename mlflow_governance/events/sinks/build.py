"""Make the sink of one ``notifications:`` entry, by its ``type``."""

from __future__ import annotations

from collections.abc import Callable

from mlflow_governance.events.sinks.aws import EventBridgeSink, SnsSink, SqsSink
from mlflow_governance.events.sinks.base import Sink
from mlflow_governance.events.sinks.slack import SlackSink
from mlflow_governance.events.sinks.webhook import WebhookSink
from mlflow_governance.policy import Notification

#: Sink class per notification type (the policy loader accepts no other type).
SINKS: dict[str, Callable[[Notification], Sink]] = {
    "webhook": WebhookSink,
    "slack": SlackSink,
    "sqs": SqsSink,
    "sns": SnsSink,
    "eventbridge": EventBridgeSink,
}


def build(index: int, notification: Notification) -> Sink:
    """The sink of ``notifications[index]``.

    Args:
        index: The entry's position in the policy, named in errors.
        notification: The validated entry.

    Raises:
        ValueError: A type the loader would not have accepted (a policy built in code).
    """
    factory = SINKS.get(notification.type)
    if factory is None:
        raise ValueError(
            f"notifications[{index}]: unknown type {notification.type!r} "
            f"(valid: {', '.join(SINKS)})"
        )
    return factory(notification)
