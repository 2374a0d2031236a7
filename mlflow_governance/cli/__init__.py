"""The ``mlflow-governance`` command line: an adapter over the governance service.

Each command parses its options, calls one action through
:func:`mlflow_governance.access.connect` (the governance server in remote mode, the
database in local mode) and prints what comes back. Shared options and output live in
:mod:`mlflow_governance.cli._common`.
"""

from __future__ import annotations

import click

from mlflow_governance.cli._common import connect, connection_options, emit, json_option, local_only
from mlflow_governance.cli.audit import audit, history
from mlflow_governance.cli.events import events
from mlflow_governance.cli.gitops import gitops
from mlflow_governance.cli.reconcile import reconcile
from mlflow_governance.cli.retention import retain
from mlflow_governance.cli.steps import promote_cmd, rollback_cmd
from mlflow_governance.cli.workflow import COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlflow-governance")
def main() -> None:
    """Govern an MLflow model registry: policies, approvals and a tamper-evident audit log.

    Remote mode (recommended): --tracking-uri or MLFLOW_TRACKING_URI names the governance
    server (http(s)://…), which authenticates you with MLflow's client credentials
    (MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN). Local mode, for
    administrators: --registry-uri or MLFLOW_REGISTRY_URI names the database
    (governed+sqlite:///registry.db, ...).
    """


@main.group()
def db() -> None:
    """Create or migrate the plugin's tables (local mode)."""


@db.command("upgrade")
@connection_options
@json_option
def db_upgrade(registry_uri: str | None, tracking_uri: str | None, as_json: bool) -> None:
    """Create MLflow's registry tables and the governance tables, or migrate them."""
    from mlflow_governance import db as schema
    from mlflow_governance.access import LocalAccess

    access = connect(registry_uri, tracking_uri)
    local_only(access, "db upgrade")
    assert isinstance(access, LocalAccess)
    engine = access.store.engine
    schema.upgrade(engine)
    if schema.restore_chain_head(engine):
        click.echo(
            "Warning: the audit chain head was missing and has been restored from the newest "
            "audit row; check 'audit verify --checkpoint FILE' against your last checkpoint.",
            err=True,
        )
    with engine.connect() as connection:
        revision = schema.current_revision(connection)
    emit(
        {"revision": revision, "version_table": schema.VERSION_TABLE},
        as_json,
        text=f"Governance tables at revision {revision}.",
    )


@main.command()
@connection_options
@json_option
def whoami(registry_uri: str | None, tracking_uri: str | None, as_json: bool) -> None:
    """Show who your calls are recorded as, how that is known, and where they go."""
    from mlflow_governance.access import resolve_uri
    from mlflow_governance.cli._common import errors
    from mlflow_governance.exceptions import ConfigurationError
    from mlflow_governance.identity import current_identity

    try:
        resolve_uri(registry_uri, tracking_uri)
    except ConfigurationError as exc:
        # Nowhere to ask: say what this process would assert, and how to reach a registry.
        ident = current_identity()
        data = {"user": ident.user, "groups": sorted(ident.groups)}
        data["identity_source"] = ident.source
        note = (
            "\n(asserted: taken from MLFLOW_TRACKING_USERNAME or the OS login; anyone with "
            "database access can claim any name. Use the governance server to be authenticated.)"
        )
        emit(data, as_json, text=f"{ident.user} (identity source: {ident.source}){note}\n{exc}")
        return
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.whoami()
    groups = ", ".join(data.get("groups") or []) or "none"
    if access.remote:
        text = (
            f"{data['user']} (identity source: {data['identity_source']}), groups: {groups}, "
            f"on the governance server {access.where}"
        )
    else:
        text = (
            f"{data['user']} (identity source: {data['identity_source']}), groups: {groups}, "
            f"on the database {access.where}"
        )
        if data["identity_source"] == "asserted":
            text += (
                "\n(asserted: taken from MLFLOW_TRACKING_USERNAME or the OS login; anyone "
                "with database access can claim any name. Use the governance server "
                "(--tracking-uri http://…) to be authenticated.)"
            )
    emit(data, as_json, text=text)


audit.add_command(reconcile)
audit.add_command(retain)
main.add_command(audit)
main.add_command(history)
main.add_command(events)
main.add_command(gitops)
for _command in (*COMMANDS, promote_cmd, rollback_cmd):
    main.add_command(_command)

__all__ = ["main"]
