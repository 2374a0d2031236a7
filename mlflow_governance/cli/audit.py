"""``audit`` and ``history`` commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mlflow_governance.cli._common import (
    EXIT_FAILED,
    connect,
    connection_options,
    emit,
    errors,
    json_option,
    parse_time,
    table,
)

F = TypeVar("F", bound=Callable[..., Any])

_LIST_COLUMNS = ("id", "time", "actor", "action", "model", "version", "decision", "reason")
_HISTORY_COLUMNS = ("time", "actor", "kind", "name", "version", "before", "after", "action")
_FILTERS = ("model", "version", "actor", "action", "decision", "since", "until")


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


def _filters(kwargs: dict[str, Any]) -> dict[str, Any]:
    args = {name: kwargs[name] for name in _FILTERS}
    args["since"] = parse_time(args["since"], "--since")
    args["until"] = parse_time(args["until"], "--until")
    return args


@click.group()
def audit() -> None:
    """Read, export and verify the audit log (needs audit:read)."""


@audit.command("list")
@connection_options
@_filter_options
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--newest-first", is_flag=True, help="Newest rows first.")
@json_option
def audit_list(
    registry_uri: str | None,
    tracking_uri: str | None,
    limit: int,
    newest_first: bool,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """List audit rows: who registered, moved, tagged or deleted what, and when."""
    access = connect(registry_uri, tracking_uri)
    with errors():
        rows = access.audit_list({**_filters(kwargs), "limit": limit, "newest_first": newest_first})
    emit(rows, as_json, text=table(rows, _LIST_COLUMNS))


@audit.command("export")
@connection_options
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
def audit_export(
    registry_uri: str | None,
    tracking_uri: str | None,
    fmt: str,
    destination: str,
    **kwargs: Any,
) -> None:
    """Export audit rows (all columns, hashes included) as JSON Lines or CSV."""
    from mlflow_governance.application import export_text

    access = connect(registry_uri, tracking_uri)
    with errors():
        rows = access.audit_export(_filters(kwargs))
        text = export_text(rows, fmt)
    _write(destination, text)
    if destination != "-":
        click.echo(f"Exported {len(rows)} rows to {destination}.", err=True)


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
@connection_options
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Also check that nothing was cut off or rewritten since this checkpoint.",
)
@click.option(
    "--verify-key",
    "verify_key",
    type=click.Path(exists=True, dir_okay=False),
    help="Ed25519 public key (PEM) the checkpoint must be signed with.",
)
@click.option(
    "--archive",
    "archives",
    multiple=True,
    metavar="MANIFEST",
    help="Also verify a retention archive (its manifest's path or s3:// URL) and that the "
    "log continues from it; repeat for several, oldest first.",
)
@json_option
def audit_verify(
    registry_uri: str | None,
    tracking_uri: str | None,
    checkpoint_file: str | None,
    verify_key: str | None,
    archives: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check the hash chain; exit 0 with the row count, or 1 naming the first broken row."""
    from mlflow_governance.cli.retention import check_archives

    if verify_key and not checkpoint_file:
        raise click.BadParameter("needs --checkpoint FILE to check", param_hint="--verify-key")
    checkpoint = Path(checkpoint_file).read_text(encoding="utf-8") if checkpoint_file else None
    if verify_key and checkpoint is not None:
        _check_signature(checkpoint, checkpoint_file or "", verify_key, as_json)
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.audit_verify(checkpoint)
        first = access.audit_list({"limit": 1}) if archives and data["ok"] else []
    archived = 0
    if archives and data["ok"]:
        mark = json.loads(checkpoint) if checkpoint is not None else None
        archived, problem = check_archives(archives, first[0] if first else None, mark)
        if problem is not None:
            data = {**data, "ok": False, "broken_id": None, "problem": problem}
    if data["ok"]:
        suffix = f", consistent with checkpoint {checkpoint_file}" if checkpoint_file else ""
        if verify_key:
            suffix += " (signature valid)"
        if archives:
            suffix += f"; {archived} archived rows in {len(archives)} archive(s) intact"
        emit(
            data,
            as_json,
            text=f"OK: {data['rows']} audit rows, chain intact{suffix} "
            f"(head {(data['head_hash'] or '')[:16]}).",
        )
        return
    problem = str(data["problem"])
    # The problem names its row already ("row 4: …"); say it once.
    where = (
        ""
        if data["broken_id"] is None or problem.startswith(f"row {data['broken_id']}:")
        else f" at row {data['broken_id']}"
    )
    emit(data, as_json, text=f"BROKEN{where}: {problem}")
    sys.exit(EXIT_FAILED)


def _check_signature(text: str, source: str, key_file: str, as_json: bool) -> None:
    """Exit 1 unless the checkpoint's signature holds under the public key."""
    from mlflow_governance.audit.signing import load_public_key, signature_problem

    with errors():
        key = load_public_key(key_file)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    problem = (
        signature_problem(data, key)
        if isinstance(data, dict)
        else f"{source} is not a JSON checkpoint"
    )
    if problem is None:
        return
    message = f"{source}: {problem}"
    emit(
        {
            "ok": False,
            "rows": None,
            "head_id": None,
            "head_hash": None,
            "broken_id": None,
            "problem": message,
        },
        as_json,
        text=f"BROKEN: {message}",
    )
    sys.exit(EXIT_FAILED)


@audit.command("checkpoint")
@connection_options
@click.option(
    "--to",
    "destination",
    required=True,
    metavar="FILE|DIR|s3://BUCKET/PREFIX",
    help="Where to keep the chain head, outside the database: a file, a directory or an S3 "
    "prefix (a timestamped file in it, for runs on a schedule), or s3://BUCKET/KEY.json.",
)
@click.option(
    "--sign-key",
    "sign_key",
    type=click.Path(exists=True, dir_okay=False),
    envvar="MLFLOW_GOVERNANCE_CHECKPOINT_KEY",
    help="Sign the checkpoint with this Ed25519 private key (PEM) "
    "[env: MLFLOW_GOVERNANCE_CHECKPOINT_KEY].",
)
@json_option
def audit_checkpoint(
    registry_uri: str | None,
    tracking_uri: str | None,
    destination: str,
    sign_key: str | None,
    as_json: bool,
) -> None:
    """Write the chain head (row count and hash) so later truncation can be detected."""
    from mlflow_governance.cli.retention import write_checkpoint

    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.audit_checkpoint()
        if sign_key:
            # Signed here, by whoever holds the key: the key never reaches the server.
            from mlflow_governance.audit.signing import load_private_key, sign

            data = sign(data, load_private_key(sign_key))
    where = write_checkpoint(destination, data)
    signed = f", signed by key {data['signature']['key_id']}" if sign_key else ""
    emit(
        data,
        as_json,
        text=f"Checkpoint of {data['rows']} rows (head {data['head_hash'][:16]}{signed}) "
        f"written to {where}.",
    )


def _stage_text(row: dict[str, Any]) -> dict[str, Any]:
    """A history row for the table: MLflow's stage "None" reads as no stage."""
    if row.get("kind") != "stage":
        return row
    shown = dict(row)
    for key in ("name", "before", "after"):
        if shown.get(key) == "None":
            shown[key] = "(no stage)"
    return shown


@click.command()
@connection_options
@click.argument("name")
@click.option("--at", "at", metavar="TIME", help="Show who held each stage and alias then.")
@json_option
def history(
    registry_uri: str | None, tracking_uri: str | None, name: str, at: str | None, as_json: bool
) -> None:
    """Who held which stage and alias of model NAME, and when (from the audit log)."""
    when = parse_time(at, "--at")
    access = connect(registry_uri, tracking_uri)
    with errors():
        rows = access.history(name, when)
    if when is None:
        emit(rows, as_json, text=table([_stage_text(r) for r in rows], _HISTORY_COLUMNS))
        return
    emit(
        rows,
        as_json,
        text=f"{name} at {at}:\n"
        + table(rows, ("kind", "name", "version", "since", "actor", "request_id")),
    )
