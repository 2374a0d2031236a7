"""What every sink is: the interface the dispatcher calls, and its one error."""

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
