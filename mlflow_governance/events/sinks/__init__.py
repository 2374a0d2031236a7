"""Where events go: one sink per entry of the policy's ``notifications:``.

Every sink has a stable ``key`` (kept in the outbox row's ``delivered_to`` once it has
the event, so a retry skips it), says which events it ``wants`` (globs on type and
model), and ``deliver``s one envelope or raises :class:`DeliveryError`.
"""

from __future__ import annotations

from typing import Any

from mlflow_governance.events.sinks.base import DeliveryError, Sink


def sinks_for(notifications: Any) -> list[Sink]:
    """The sinks of a policy's ``notifications`` (in order)."""
    from mlflow_governance.events.sinks.build import build

    return [build(index, notification) for index, notification in enumerate(notifications)]


__all__ = ["DeliveryError", "Sink", "sinks_for"]
