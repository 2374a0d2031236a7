"""The ``mlflow-governance`` command line.

Commands are kept apart from the core: each module here parses options, calls the core and
prints. Shared options are defined once in :mod:`mlflow_governance.cli._common`.
"""

from __future__ import annotations

import click

from mlflow_governance.cli._common import emit, json_option, open_store, registry_option
from mlflow_governance.cli.audit import audit, history
from mlflow_governance.cli.workflow import COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlflow-governance")
def main() -> None:
    """Govern an MLflow model registry: policies, approvals and a tamper-evident audit log.

    The registry comes from --registry-uri or MLFLOW_REGISTRY_URI, e.g.
    governed+sqlite:///registry.db.
    """


@main.group()
def db() -> None:
    """Create or migrate the plugin's tables."""


@db.command("upgrade")
@registry_option
@json_option
def db_upgrade(registry_uri: str, as_json: bool) -> None:
    """Create MLflow's registry tables and the governance tables, or migrate them."""
    from mlflow_governance import db as schema

    store = open_store(registry_uri)
    schema.upgrade(store.engine)
    if schema.restore_chain_head(store.engine):
        click.echo(
            "Warning: the audit chain head was missing and has been restored from the newest "
            "audit row; check 'audit verify --checkpoint FILE' against your last checkpoint.",
            err=True,
        )
    with store.engine.connect() as connection:
        revision = schema.current_revision(connection)
    emit(
        {"revision": revision, "version_table": schema.VERSION_TABLE},
        as_json,
        text=f"Governance tables at revision {revision}.",
    )


@main.command()
@json_option
def whoami(as_json: bool) -> None:
    """Show who the plugin will record as the actor of your calls, and how it knows."""
    from mlflow_governance.identity import current_identity

    ident = current_identity()
    data = {"user": ident.user, "identity_source": ident.source, "groups": sorted(ident.groups)}
    note = ""
    if ident.source == "asserted":
        note = (
            "\n(asserted: taken from MLFLOW_TRACKING_USERNAME or the OS login; anyone with "
            "database access can claim any name. Use the governance server to enforce.)"
        )
    emit(data, as_json, text=f"{ident.user} (identity source: {ident.source}){note}")


main.add_command(audit)
main.add_command(history)
for _command in COMMANDS:
    main.add_command(_command)

__all__ = ["main"]
