"""``audit`` and ``history`` commands."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mlflow_governance.cli._common import (
    emit,
    fail,
    json_option,
    open_store,
    parse_time,
    registry_option,
    table,
)

F = TypeVar("F", bound=Callable[..., Any])

_LIST_COLUMNS = ("id", "time", "actor", "action", "model", "version", "decision", "reason")


def _filter_options(func: F) -> F:
    for option in reversed(
        [
            click.option("--model", help="Only rows about this registered model."),
            click.option("--version", type=int, help="Only rows about this version."),
            click.option("--actor", help="Only rows by this user."),
            click.option("--action", help="Only this action, e.g. transition_model_version_stage."),
            click.option("--decision", type=click.Choice(["allow", "deny", "would-deny"])),
            click.option("--since", metavar="TIME", help="From this ISO-8601 time (UTC)."),
            click.option("--until", metavar="TIME", help="Up to this ISO-8601 time (UTC)."),
        ]
    ):
        func = option(func)
    return func


def _make_filter(kwargs: dict[str, Any], limit: int | None, newest_first: bool) -> Any:
    from mlflow_governance.audit.query import AuditFilter

    return AuditFilter(
        model=kwargs["model"],
        version=kwargs["version"],
        actor=kwargs["actor"],
        action=kwargs["action"],
        decision=kwargs["decision"],
        since=parse_time(kwargs["since"], "--since"),
        until=parse_time(kwargs["until"], "--until"),
        limit=limit,
        newest_first=newest_first,
    )


@click.group()
def audit() -> None:
    """Read, export and verify the audit log."""


@audit.command("list")
@registry_option
@_filter_options
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--newest-first", is_flag=True, help="Newest rows first.")
@json_option
def audit_list(
    registry_uri: str, limit: int, newest_first: bool, as_json: bool, **kwargs: Any
) -> None:
    """List audit rows: who registered, moved, tagged or deleted what, and when."""
    from mlflow_governance.audit.query import list_rows

    store = open_store(registry_uri)
    _require_audit_read(store, kwargs["model"], "read_audit")
    with store.engine.connect() as connection:
        rows = list_rows(connection, _make_filter(kwargs, limit, newest_first))
    emit(rows, as_json, text=table(rows, _LIST_COLUMNS))


@audit.command("export")
@registry_option
@_filter_options
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--to",
    "destination",
    required=True,
    metavar="PATH|s3://BUCKET/KEY",
    help="Where to write; '-' for standard output.",
)
def audit_export(registry_uri: str, fmt: str, destination: str, **kwargs: Any) -> None:
    """Export audit rows (all columns, hashes included) as JSON Lines or CSV."""
    from mlflow_governance.audit.query import COLUMNS, list_rows

    store = open_store(registry_uri)
    _require_audit_read(store, kwargs["model"], "export_audit")
    with store.engine.connect() as connection:
        rows = list_rows(connection, _make_filter(kwargs, None, False))
    buffer = io.StringIO()
    if fmt == "jsonl":
        for row in rows:
            buffer.write(json.dumps(row, sort_keys=True, default=str) + "\n")
    else:
        writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "details": json.dumps(row["details"], sort_keys=True)})
    _write(destination, buffer.getvalue())
    if destination != "-":
        click.echo(f"Exported {len(rows)} rows to {destination}.", err=True)


def _require_audit_read(store: Any, model: str | None, action: str) -> None:
    """The command line shows no more than the REST API: audit rows need ``audit:read``."""
    from mlflow_governance.exceptions import GovernanceError
    from mlflow_governance.identity import current_identity

    try:
        store.require(current_identity(), "audit:read", model, action)
    except GovernanceError as exc:
        raise click.ClickException(exc.message) from None


def _write(destination: str, text: str) -> None:
    if destination == "-":
        click.echo(text, nl=False)
    elif destination.startswith("s3://"):
        bucket, _, key = destination[len("s3://") :].partition("/")
        if not bucket or not key:
            raise click.BadParameter("expected s3://BUCKET/KEY", param_hint="--to")
        try:
            import boto3
        except ImportError:
            raise click.ClickException(
                "Exporting to S3 needs boto3: pip install 'mlflow-governance[aws]'."
            ) from None
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))
    else:
        Path(destination).write_text(text, encoding="utf-8")


@audit.command("verify")
@registry_option
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Also check that nothing was cut off or rewritten since this checkpoint.",
)
@json_option
def audit_verify(registry_uri: str, checkpoint_file: str | None, as_json: bool) -> None:
    """Check the hash chain; exit 0 with the row count, or 1 naming the first broken row."""
    from mlflow_governance.audit.query import Checkpoint, verify
    from mlflow_governance.exceptions import InvalidRequest

    checkpoint = None
    if checkpoint_file:
        try:
            checkpoint = Checkpoint.from_json(Path(checkpoint_file).read_text(), checkpoint_file)
        except InvalidRequest as exc:
            raise click.ClickException(exc.message) from None
    store = open_store(registry_uri)
    with store.engine.connect() as connection:
        result = verify(connection, checkpoint)
    data = {
        "ok": result.ok,
        "rows": result.rows,
        "head_id": result.head_id,
        "head_hash": result.head_hash,
        "broken_id": result.broken_id,
        "problem": result.problem,
    }
    if result.ok:
        suffix = f", consistent with checkpoint {checkpoint_file}" if checkpoint else ""
        emit(
            data,
            as_json,
            text=f"OK: {result.rows} audit rows, chain intact{suffix} "
            f"(head {result.head_hash[:16]}).",
        )
        return
    emit(data, as_json, text=f"BROKEN at row {result.broken_id}: {result.problem}")
    raise SystemExit(1)


@audit.command("checkpoint")
@registry_option
@click.option(
    "--to",
    "destination",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write the chain head to; keep it outside the database.",
)
@json_option
def audit_checkpoint(registry_uri: str, destination: str, as_json: bool) -> None:
    """Write the chain head (row count and hash) so later truncation can be detected."""
    from mlflow_governance.audit.query import make_checkpoint

    store = open_store(registry_uri)
    with store.engine.connect() as connection:
        checkpoint, result = make_checkpoint(connection)
    if not result.ok:
        fail(f"Refusing to checkpoint a broken chain: row {result.broken_id}: {result.problem}")
    Path(destination).write_text(checkpoint.to_json(), encoding="utf-8")
    emit(
        json.loads(checkpoint.to_json()),
        as_json,
        text=f"Checkpoint of {checkpoint.rows} rows (head {checkpoint.head_hash[:16]}) "
        f"written to {destination}.",
    )


@click.command()
@registry_option
@click.argument("name")
@click.option("--at", "at", metavar="TIME", help="Show who held each stage and alias then.")
@json_option
def history(registry_uri: str, name: str, at: str | None, as_json: bool) -> None:
    """Who held which stage and alias of model NAME, and when (from the audit log)."""
    from mlflow_governance.audit.query import history as load_history
    from mlflow_governance.audit.query import holders_at

    when = parse_time(at, "--at")
    store = open_store(registry_uri)
    _require_audit_read(store, name, "read_history")
    with store.engine.connect() as connection:
        events = load_history(connection, name, when)
    if when is None:
        rows = [e.to_dict() for e in events]
        emit(
            rows,
            as_json,
            text=table(
                rows, ("time", "actor", "kind", "name", "version", "before", "after", "action")
            ),
        )
        return
    holders = [h.__dict__ for h in holders_at(events)]
    emit(
        holders,
        as_json,
        text=f"{name} at {at}:\n"
        + table(holders, ("kind", "name", "version", "since", "actor", "request_id")),
    )
