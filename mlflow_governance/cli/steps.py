"""The pipeline steps: ``promote`` (optionally waiting) and ``rollback``."""

from __future__ import annotations

import sys

import click

from mlflow_governance.cli._common import (
    EXIT_PENDING,
    comment_option,
    connect,
    connection_options,
    emit,
    errors,
    json_option,
    review_line,
)


@click.command("promote")
@connection_options
@click.argument("name")
@click.argument("version", type=int)
@click.option("--to", "to", required=True, metavar="STAGE|@ALIAS")
@click.option("--wait", is_flag=True, help="Wait until the request is applied or closed.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds to wait with --wait (exit 4 when they run out).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between polls with --wait.",
)
@comment_option
@json_option
def promote_cmd(
    registry_uri: str | None,
    tracking_uri: str | None,
    name: str,
    version: int,
    to: str,
    wait: bool,
    timeout: float,
    poll_interval: float,
    comment: str | None,
    as_json: bool,
) -> None:
    """Move NAME VERSION to a stage or @alias through its gate (apply, or request and wait).

    Exit 0 when applied, 3 when a request is open and waiting, 4 when --wait timed out,
    1 when refused or the request was closed.
    """
    from mlflow_governance.access.waiting import wait_for_promotion

    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.promote(name, version, to, comment)
        if wait and data["status"] != "applied":
            data = wait_for_promotion(
                access,
                data,
                model=name,
                version=version,
                to=to,
                timeout=timeout,
                poll_interval=poll_interval,
                progress=lambda line: click.echo(line, err=True),
            )
    request = data.get("request") or {}
    if data["status"] == "applied":
        text = f"{name} version {version} is now at {to}." + review_line(data)
    else:
        text = (
            f"{name} version {version} is not at {to} yet: request #{request['id']} is "
            f"{request['state']} ({request.get('needs') or 'waiting'})."
        )
    emit(data, as_json, text=text)
    if data["status"] != "applied":
        sys.exit(EXIT_PENDING)


@click.command("rollback")
@connection_options
@click.argument("name")
@click.option("--stage", help="Restore the previous holder of this stage.")
@click.option("--alias", help="Restore the previous holder of this alias.")
@comment_option
@json_option
def rollback_cmd(
    registry_uri: str | None,
    tracking_uri: str | None,
    name: str,
    stage: str | None,
    alias: str | None,
    comment: str | None,
    as_json: bool,
) -> None:
    """Restore the version that held a stage or alias before, through the gate.

    Exit 0 when restored, 3 when a rollback request waits for approvals, 1 when refused
    or there is nothing to roll back to.
    """
    if (stage is None) == (alias is None):
        raise click.UsageError("give exactly one of --stage or --alias")
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.rollback(name, stage=stage, alias=alias, comment=comment)
    if data["status"] == "applied":
        text = (
            f"Rolled back: {name} {data['target']} is version {data['version']} again."
            + review_line(data)
        )
    else:
        req = data["request"]
        text = (
            f"Rollback of {name} {data['target']} to version {data['version']} requested: "
            f"request #{req['id']} ({req.get('needs')})."
        )
    emit(data, as_json, text=text)
    if data["status"] != "applied":
        sys.exit(EXIT_PENDING)
