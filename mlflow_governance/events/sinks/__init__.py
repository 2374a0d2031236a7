"""Where events go: one sink per entry of the policy's ``notifications:``.

Every sink has a stable ``key`` (kept in the outbox row's ``delivered_to`` once it has
the event, so a retry skips it), says which events it ``wants`` (globs on type and
model), and ``deliver``s one envelope or raises :class:`DeliveryError`.
"""

from __future__ import annotations

from typing import Any, Protocol


class DeliveryError(Exception):
    """A sink could not take an event; the dispatcher tries again later.

    Attributes:
        permanent: Trying again cannot help (e.g. a URL the policy forbids); the event
            is marked dead at once instead of after the attempts run out.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sink(Protocol):
    """One destination of events."""

    @property
    def key(self) -> str:
        """Stable identity of the destination, e.g. ``webhook:https://ci.example/hook``."""
        ...

    def wants(self, event_type: str, model: str | None) -> bool:
        """Whether this destination subscribes to the event."""
        ...

    def deliver(self, body: bytes, event: dict[str, Any]) -> None:
        """Send one CloudEvent (``body``, structured JSON) of ``event`` (``events list`` shape).

        Raises:
            DeliveryError: Not delivered.
        """
        ...


def sinks_for(notifications: Any) -> list[Sink]:
    """The sinks of a policy's ``notifications`` (in order)."""
    from mlflow_governance.events.sinks.build import build

    return [build(index, notification) for index, notification in enumerate(notifications)]
