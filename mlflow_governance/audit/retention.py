"""Retention: archive the oldest audit rows with a manifest, then cut them from the table.

Only a whole prefix of the chain is cut (rows ``first..last``, everything before a time),
so what remains is still one chain: its first row links to the hash of the last archived
row, recorded as the anchor (:mod:`mlflow_governance.audit.anchor`). The archive is a
JSON Lines file of the rows exactly as stored (the time in the form that is hashed, the
details as their stored text), so it can be re-verified on its own, and a manifest that
names its first and last row, the last hash, the row count, the JSONL's sha256 and the
chain head at the cut.

Nothing is deleted until the archive has been read back from where it was written and
checked against the manifest; the anchor, the delete and the audit row of the retention
itself commit in one transaction.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from mlflow_governance.audit.anchor import Anchor, audit_anchor, current_anchor
from mlflow_governance.audit.chain import VerifyResult, format_time, parse_time, verify_rows
from mlflow_governance.audit.tables import HEAD_ROW_ID, audit_head, audit_log
from mlflow_governance.exceptions import Conflict, InvalidRequest

#: What a manifest says it is.
MANIFEST_FORMAT = "mlflow-governance-audit-archive/1"
_PAGE = 5000


@dataclass(frozen=True)
class Manifest:
    """What an archive holds.

    Attributes:
        first_id: The first archived row.
        last_id: The last archived row.
        prev_hash: What the first row links to (the genesis or the previous anchor).
        last_hash: The hash of the last row: the new anchor.
        rows: How many rows the JSONL holds.
        jsonl: The JSONL's file name, next to the manifest.
        jsonl_sha256: The sha256 of the JSONL's bytes.
        head_id: The chain head (``governance_audit_head``) at the cut.
        head_hash: Its hash.
        before: The retention time asked for (rows older than it were cut).
        created_at: When the archive was written.
        created_by: Who ran the retention.
    """

    first_id: int
    last_id: int
    prev_hash: str
    last_hash: str
    rows: int
    jsonl: str
    jsonl_sha256: str
    head_id: int
    head_hash: str
    before: str
    created_at: str
    created_by: str
    format: str = MANIFEST_FORMAT

    def to_text(self) -> str:
        """The manifest file's text (its sha256 is recorded in the anchor)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_text(cls, text: str, source: str) -> Manifest:
        """Parse a manifest.

        Raises:
            InvalidRequest: Not a manifest written by ``audit retain``.
        """
        try:
            data = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, not {MANIFEST_FORMAT!r}")
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidRequest(
                f"{source} is not an audit archive manifest written by "
                f"'mlflow-governance audit retain': {exc}"
            ) from exc


def sha256_text(text: str) -> str:
    """The hex sha256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- where archives go


class Destination:
    """A local directory or an S3 prefix that archives are written to and read back from.

    Args:
        target: ``PATH`` (a directory, created if missing) or ``s3://bucket/prefix``.
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/") if target.startswith("s3://") else target
        if self.is_s3:
            bucket, _, prefix = self.target[len("s3://") :].partition("/")
            if not bucket:
                raise InvalidRequest(f"archive={target!r}: expected s3://BUCKET/PREFIX.")
            self.bucket, self.prefix = bucket, prefix
        elif not target.strip():
            raise InvalidRequest("archive must be a directory or s3://BUCKET/PREFIX.")
        if "\x00" in target:
            raise InvalidRequest("archive must not contain a NUL character.")

    @property
    def is_s3(self) -> bool:
        return self.target.startswith("s3://")

    def location(self, name: str) -> str:
        """Where a file of this name goes, as a path or an ``s3://`` URL."""
        if self.is_s3:
            key = f"{self.prefix}/{name}" if self.prefix else name
            return f"s3://{self.bucket}/{key}"
        return str(Path(self.target) / name)

    def _client(self) -> Any:
        try:
            import boto3
        except ImportError:
            raise InvalidRequest(
                "Archiving to S3 needs boto3: pip install 'mlflow-governance[aws]'."
            ) from None
        return boto3.client("s3")

    def exists(self, name: str) -> bool:
        if not self.is_s3:
            return Path(self.location(name)).exists()
        from botocore.exceptions import ClientError

        key = self.location(name)[len(f"s3://{self.bucket}/") :]
        try:
            self._client().head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        return True

    def write(self, name: str, data: IO[bytes]) -> None:
        """Store a file (``data`` positioned at its start).

        Raises:
            InvalidRequest: It cannot be written there (nothing is deleted then).
        """
        try:
            self._write(name, data)
        except InvalidRequest:
            raise
        except Exception as exc:  # OSError, botocore's ClientError and its kin
            raise InvalidRequest(
                f"Cannot write the archive {self.location(name)}: {exc}; nothing was deleted."
            ) from exc

    def _write(self, name: str, data: IO[bytes]) -> None:
        if self.is_s3:
            key = self.location(name)[len(f"s3://{self.bucket}/") :]
            self._client().upload_fileobj(data, self.bucket, key)
            return
        path = Path(self.location(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("xb") as out:  # never overwrite an archive
            while chunk := data.read(1 << 20):
                out.write(chunk)

    def read(self, name: str) -> bytes:
        """A stored file's bytes, read back from where it went."""
        return read_location(self.location(name))


def read_location(location: str) -> bytes:
    """The bytes of a local file or an ``s3://bucket/key`` object.

    Raises:
        InvalidRequest: It cannot be read.
    """
    try:
        if location.startswith("s3://"):
            bucket, _, key = location[len("s3://") :].partition("/")
            try:
                import boto3
            except ImportError:
                raise InvalidRequest(
                    "Reading from S3 needs boto3: pip install 'mlflow-governance[aws]'."
                ) from None
            body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
            return bytes(body.read())
        return Path(location).read_bytes()
    except InvalidRequest:
        raise
    except Exception as exc:  # OSError, botocore's ClientError and its kin
        raise InvalidRequest(f"Cannot read {location}: {exc}") from exc


# ---------------------------------------------------------------------- reading rows


def archived_form(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as the archive keeps it: every column, the time as hashed, details as stored."""
    data = {column.name: row[column.name] for column in audit_log.columns}
    if isinstance(data["time"], datetime):
        data["time"] = format_time(data["time"])
    return data


def _rows_between(connection: sa.Connection, after: int, last: int) -> Iterator[dict[str, Any]]:
    """Rows ``after < id <= last`` in id order, a page at a time (flat memory)."""
    c = audit_log.c
    while after < last:
        page = connection.execute(
            sa.select(audit_log).where(c.id > after, c.id <= last).order_by(c.id).limit(_PAGE)
        ).all()
        if not page:
            return
        for row in page:
            yield dict(row._mapping)
        after = int(page[-1].id)


def cut_point(connection: sa.Connection, anchor: Anchor, before: datetime) -> int:
    """The last row of the prefix to cut: every row up to it is older than ``before``.

    Rows are chained in id order under the head's lock, but their times come from the
    writers' clocks: the cut stops before the first row at or after ``before``.

    Returns:
        That row's id, or ``anchor.last_id`` when there is nothing to cut.
    """
    c = audit_log.c
    first_newer = connection.execute(
        sa.select(sa.func.min(c.id)).where(c.id > anchor.last_id, c.time >= utc_naive(before))
    ).scalar()
    if first_newer is not None:
        return int(first_newer) - 1
    newest = connection.execute(sa.select(sa.func.max(c.id))).scalar()
    return int(newest) if newest is not None else anchor.last_id


def verify_archive(manifest: Manifest, jsonl: bytes) -> VerifyResult:
    """Check an archive's rows against its manifest and their own chain.

    Returns:
        Success with the row count and last hash, or the first problem.
    """

    def problem(text: str) -> VerifyResult:
        return VerifyResult(False, 0, manifest.first_id - 1, manifest.prev_hash, None, text)

    digest = hashlib.sha256(jsonl).hexdigest()
    if digest != manifest.jsonl_sha256:
        return problem(
            f"the archive {manifest.jsonl} has sha256 {digest}, but its manifest records "
            f"{manifest.jsonl_sha256}: the file was changed or replaced"
        )
    try:
        rows = [json.loads(line) for line in io.StringIO(jsonl.decode("utf-8")) if line.strip()]
    except ValueError as exc:
        return problem(f"the archive {manifest.jsonl} is not JSON Lines: {exc}")
    result = verify_rows(rows, first_id=manifest.first_id, prev_hash=manifest.prev_hash)
    if not result.ok:
        return result
    if (result.rows, result.head_id, result.head_hash) != (
        manifest.rows,
        manifest.last_id,
        manifest.last_hash,
    ):
        return problem(
            f"the archive holds rows {manifest.first_id}..{result.head_id} ({result.rows}, "
            f"last hash {result.head_hash[:16]}), but its manifest says rows "
            f"{manifest.first_id}..{manifest.last_id} ({manifest.rows}, last hash "
            f"{manifest.last_hash[:16]})"
        )
    return result


# ---------------------------------------------------------------------- the cut


@dataclass(frozen=True)
class Archived:
    """An archive written and read back, not yet cut from the table."""

    manifest: Manifest
    manifest_location: str
    manifest_sha256: str
    anchor: Anchor


def write_archive(
    connection: sa.Connection,
    destination: Destination,
    anchor: Anchor,
    last_id: int,
    *,
    before: datetime,
    now: datetime,
    actor: str,
) -> Archived:
    """Write rows ``anchor.first_id..last_id`` and their manifest, then read both back.

    Raises:
        Conflict: The rows to archive do not form an intact chain (an archive of them
            would carry the damage away), a file of that name exists already, or what
            was read back differs from what was written.
    """
    stem = f"governance-audit-{anchor.first_id:012d}-{last_id:012d}"
    jsonl_name, manifest_name = f"{stem}.jsonl", f"{stem}.manifest.json"
    for name in (jsonl_name, manifest_name):
        if destination.exists(name):
            raise Conflict(
                f"{destination.location(name)} exists already; retention never overwrites "
                "an archive. Move it away or archive somewhere else."
            )
    digest = hashlib.sha256()
    with tempfile.SpooledTemporaryFile(max_size=32 << 20) as spool:

        def archived() -> Iterator[dict[str, Any]]:
            for row in _rows_between(connection, anchor.last_id, last_id):
                data = archived_form(row)
                line = (json.dumps(data, sort_keys=True, ensure_ascii=False) + "\n").encode()
                spool.write(line)
                digest.update(line)
                yield data

        checked = verify_rows(archived(), first_id=anchor.first_id, prev_hash=anchor.last_hash)
        if not checked.ok or checked.head_id != last_id:
            raise Conflict(
                f"Refusing to archive rows {anchor.first_id}..{last_id}: the chain is broken "
                f"there ({checked.problem or 'rows are missing'}). Run 'mlflow-governance "
                "audit verify' and investigate before any retention."
            )
        head = connection.execute(
            sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ROW_ID)
        ).one()
        manifest = Manifest(
            first_id=anchor.first_id,
            last_id=last_id,
            prev_hash=anchor.last_hash,
            last_hash=checked.head_hash,
            rows=checked.rows,
            jsonl=jsonl_name,
            jsonl_sha256=digest.hexdigest(),
            head_id=int(head.seq),
            head_hash=str(head.hash),
            before=format_time(before),
            created_at=format_time(now),
            created_by=actor,
        )
        spool.seek(0)
        destination.write(jsonl_name, spool)
    text = manifest.to_text()
    destination.write(manifest_name, io.BytesIO(text.encode("utf-8")))
    # Read both back from where they went: only then may the rows leave the table.
    stored_text = destination.read(manifest_name).decode("utf-8")
    if stored_text != text:
        raise Conflict(
            f"The manifest read back from {destination.location(manifest_name)} "
            "differs from what was written; nothing was deleted."
        )
    result = verify_archive(manifest, destination.read(jsonl_name))
    if not result.ok:
        raise Conflict(
            f"The archive read back from {destination.location(jsonl_name)} does not check "
            f"out ({result.problem}); nothing was deleted."
        )
    return Archived(manifest, destination.location(manifest_name), sha256_text(text), anchor)


def cut(connection: sa.Connection, archived: Archived, *, now: datetime, actor: str) -> int:
    """Record the anchor and delete the archived rows, in the caller's transaction.

    The chain head's row is locked first, so two retentions (or a retention and a
    writer) queue; the anchor is re-read under that lock.

    Returns:
        How many rows were deleted.

    Raises:
        Conflict: Another retention cut rows since the archive was written.
    """
    connection.execute(
        sa.update(audit_head).where(audit_head.c.id == HEAD_ROW_ID).values(seq=audit_head.c.seq)
    )
    if current_anchor(connection) != archived.anchor:
        raise Conflict(
            "Another retention cut audit rows while this archive was written; nothing was "
            f"deleted. The archive {archived.manifest_location} is not needed: run retention again."
        )
    m = archived.manifest
    connection.execute(
        sa.insert(audit_anchor).values(
            first_id=m.first_id,
            last_id=m.last_id,
            last_hash=m.last_hash,
            rows=m.rows,
            head_id=m.head_id,
            head_hash=m.head_hash,
            cut_before=utc_naive(parse_time(m.before)),
            archive=archived.manifest_location[:1024],
            manifest_sha256=archived.manifest_sha256,
            archived_by=actor[:256],
            archived_at=utc_naive(now),
        )
    )
    c = audit_log.c
    deleted = connection.execute(
        sa.delete(audit_log).where(c.id >= m.first_id, c.id <= m.last_id)
    ).rowcount
    if deleted != m.rows:
        raise Conflict(
            f"Retention expected to delete {m.rows} archived rows but found {deleted}; "
            "nothing was deleted. Run 'mlflow-governance audit verify'."
        )
    return int(deleted)


def utc_naive(value: datetime) -> datetime:
    """A time as the audit table stores it: UTC without a zone (naive means UTC)."""
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
