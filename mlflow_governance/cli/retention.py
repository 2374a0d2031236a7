"""``audit retain``, and what ``audit verify`` and ``audit checkpoint`` do with archives,
signatures and scheduled destinations."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from mlflow_governance.cli._common import connect, connection_options, emit, errors, json_option


@click.command("retain")
@connection_options
@click.option(
    "--before",
    required=True,
    metavar="TIME",
    help="Archive and cut every audit row older than this ISO-8601 time (UTC).",
)
@click.option(
    "--archive",
    required=True,
    metavar="PATH|s3://BUCKET/PREFIX",
    help="Directory or S3 prefix for the rows (JSONL) and their manifest. In remote mode "
    "the server writes it.",
)
@json_option
def retain(
    registry_uri: str | None, tracking_uri: str | None, before: str, archive: str, as_json: bool
) -> None:
    """Archive the oldest audit rows with a manifest, then cut them (needs policy:admin).

    The archive is read back and checked before anything is deleted; the chain stays
    verifiable from the anchor the cut records.
    """
    from mlflow_governance.cli._common import parse_time

    parse_time(before, "--before")
    access = connect(registry_uri, tracking_uri)
    with errors():
        data = access.audit_retain(before, archive)
    if not data["rows"]:
        text = f"Nothing to archive: no audit row older than {before} is left."
    else:
        text = (
            f"Archived rows {data['first_id']}..{data['last_id']} ({data['rows']} rows) to "
            f"{data['jsonl']}\nManifest {data['manifest']} (sha256 {data['manifest_sha256']})\n"
            f"Cut from the table; the chain now starts after row {data['last_id']} "
            f"(anchor {data['last_hash'][:16]})."
        )
    emit(data, as_json, text=text)


# ---------------------------------------------------------------------- audit verify --archive


def _sibling(manifest_location: str, name: str) -> str:
    """The location of ``name`` next to a manifest (same directory or S3 prefix)."""
    head, _, _ = manifest_location.rpartition("/")
    if manifest_location.startswith("s3://"):
        return f"{head}/{name}"
    return str(Path(manifest_location).with_name(name))


def check_archives(
    locations: Sequence[str],
    first_row: Mapping[str, Any] | None,
    checkpoint: Mapping[str, Any] | None,
) -> tuple[int, str | None]:
    """Verify archives (oldest first) against their manifests, against each other, and
    against the first row still in the database.

    Args:
        locations: Manifest paths or ``s3://`` URLs, oldest first.
        first_row: The oldest row left in the table (``audit list --limit 1``), or None.
        checkpoint: A checkpoint whose row may lie in an archive: its hash is checked there.

    Returns:
        ``(rows, problem)``: rows checked, and the first problem or None.
    """
    from mlflow_governance.audit.retention import Manifest, read_location, verify_archive

    total = 0
    previous: Manifest | None = None
    for location in locations:
        with errors():
            manifest = Manifest.from_text(read_location(location).decode("utf-8"), location)
            jsonl = read_location(_sibling(location, manifest.jsonl))
        if previous is not None and (
            manifest.first_id != previous.last_id + 1 or manifest.prev_hash != previous.last_hash
        ):
            return total, (
                f"archive {location} does not follow {previous.jsonl}: it starts at row "
                f"{manifest.first_id} after {manifest.prev_hash[:16]}, the one before ends at "
                f"row {previous.last_id} with {previous.last_hash[:16]}"
            )
        result = verify_archive(manifest, jsonl)
        if not result.ok:
            return total, f"archive {location}: {result.problem}"
        total += result.rows
        if checkpoint is not None and manifest.first_id <= int(checkpoint["head_id"]) <= (
            manifest.last_id
        ):
            rows = [json.loads(line) for line in io.StringIO(jsonl.decode("utf-8")) if line]
            stored = rows[int(checkpoint["head_id"]) - manifest.first_id]["hash"]
            if stored != checkpoint["head_hash"]:
                return total, (
                    f"row {checkpoint['head_id']} in archive {location}: its hash differs "
                    "from the checkpoint: the log was rewritten after the checkpoint"
                )
        previous = manifest
    if (
        previous is not None
        and first_row is not None
        and (
            int(first_row["id"]) != previous.last_id + 1
            or first_row["prev_hash"] != previous.last_hash
        )
    ):
        return total, (
            f"the database's oldest row is {first_row['id']} linking to "
            f"{str(first_row['prev_hash'])[:16]}, but the newest archive ends at row "
            f"{previous.last_id} with {previous.last_hash[:16]}"
        )
    return total, None


# ---------------------------------------------------------------------- audit checkpoint --to


def checkpoint_name(checkpoint: Mapping[str, Any]) -> str:
    """A file name for a scheduled checkpoint, from its time.

    E.g. ``checkpoint-20261127T020000Z.json``.
    """
    stamp = re.sub(r"[^0-9T]", "", str(checkpoint.get("time", "")).split(".")[0])
    return f"checkpoint-{stamp or 'unknown'}Z.json"


def write_checkpoint(destination: str, checkpoint: Mapping[str, Any]) -> str:
    """Store a checkpoint file: a file path, a directory (a timestamped file in it), or
    ``s3://bucket/key.json`` / ``s3://bucket/prefix`` (a timestamped key under it).

    Returns:
        Where it went.
    """
    text = json.dumps(checkpoint, indent=2, sort_keys=True) + "\n"
    if destination.startswith("s3://"):
        bucket, _, key = destination[len("s3://") :].partition("/")
        if not bucket:
            raise click.BadParameter("expected s3://BUCKET/KEY.json or s3://BUCKET/PREFIX")
        if not key.endswith(".json"):
            key = f"{key.rstrip('/')}/{checkpoint_name(checkpoint)}".lstrip("/")
        try:
            import boto3
        except ImportError:
            raise click.ClickException(
                "Writing to S3 needs boto3: pip install 'mlflow-governance[aws]'."
            ) from None
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))
        return f"s3://{bucket}/{key}"
    path = Path(destination)
    if path.is_dir() or destination.endswith(("/", "\\")):
        path.mkdir(parents=True, exist_ok=True)
        path = path / checkpoint_name(checkpoint)
    path.write_text(text, encoding="utf-8")
    return str(path)
