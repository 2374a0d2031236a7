"""What the workflow needs of the registry it governs, and nothing more.

The workflow sits below the governed store: the store hands itself to the workflow, but
the workflow never imports the store (the import-linter contracts in ``pyproject.toml``
hold that line). It names here, as a :class:`~typing.Protocol`, exactly the members it
uses: the unfiltered reads a gate must make whoever asks, the workspace and subject of
the current call, the policy in force, and the one way back into the governed write path
(:meth:`Registry.governed_move`). :class:`~mlflow_governance.store.GovernedStore`
satisfies it structurally; the type checker verifies that wherever the store is passed in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import sqlalchemy as sa

    from mlflow_governance.identity import Identity
    from mlflow_governance.policy import Subject
    from mlflow_governance.policy_source import PolicySource
    from mlflow_governance.workflow.moves import Move
    from mlflow_governance.workflow.request_rows import VersionIdentity


class Registry(Protocol):
    """The governed registry as the approval workflow and the gate see it."""

    # Read-only properties rather than plain attributes: MLflow declares some of these
    # as properties, which a settable protocol attribute would not accept.

    @property
    def engine(self) -> sa.Engine:
        """The database holding the registry, the requests and the audit chain."""

    @property
    def policies(self) -> PolicySource:
        """Where the policy in force is loaded from (and invalidated after a change)."""

    @property
    def supports_workspaces(self) -> bool:
        """Whether the registry is split into MLflow workspaces."""

    @property
    def tracking_uri(self) -> str | None:
        """The tracking server a gate reads run metrics from (None: MLflow's default)."""

    def active_workspace(self) -> str | None:
        """The MLflow workspace of the current call, on workspace-aware registries."""

    def subject_of(self, identity: Identity) -> Subject:
        """The policy's view of an actor, in the workspace of the current call."""

    # Raw reads skip read authorisation: a gate must see the version even when the
    # person moving it may not read it, and nothing read here reaches them unfiltered.

    def raw_version(self, name: str, version: int) -> Any:
        """The model version as MLflow stores it."""

    def raw_download_uri(self, name: str, version: int) -> str:
        """Where the version's files are."""

    def raw_version_by_alias(self, name: str, alias: str) -> Any:
        """The version an alias points at."""

    def raw_latest_versions(self, name: str, stages: list[str]) -> list[Any]:
        """The newest version per stage."""

    def raw_identity(self, name: str, version: int) -> tuple[str, VersionIdentity]:
        """The stored spelling of a live version's model name, and the version's identity."""

    def governed_move(self, identity: Identity, move: Move) -> Any:
        """Make a stage or alias move for ``identity`` through the single governed write
        path, where the gate runs again at the moment of the move."""


__all__ = ["Registry"]
