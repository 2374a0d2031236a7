"""Audit retention: archive the oldest rows, then cut them, for holders of ``policy:admin``."""

from __future__ import annotations

from typing import Any

from mlflow_governance.application._core import ServiceCore, parse_time, text_arg
from mlflow_governance.exceptions import InvalidRequest
from mlflow_governance.identity import Identity

#: The action the retention's own audit row (and a refused retention) is recorded under.
RETAIN_ACTION = "audit_retain"


class RetentionActions(ServiceCore):
    """``audit retain``: rows older than a time go to an archive, then leave the table."""

    def audit_retain(self, identity: Identity, before: Any, archive: Any) -> dict[str, Any]:
        """Archive every audit row older than ``before`` (a whole prefix of the chain) to
        ``archive`` with a manifest, read it back, then record the anchor and delete those
        rows in one transaction with an audit row of the retention itself.

        Needs ``policy:admin`` on every model (a refusal is audited). The archive is
        written by the process that runs this: in remote mode, a path on the server.

        Args:
            identity: The caller.
            before: An ISO-8601 time in the past.
            archive: A directory, or ``s3://bucket/prefix``.

        Returns:
            ``{"rows", "first_id", "last_id", "last_hash", "manifest", "jsonl",
            "manifest_sha256", "jsonl_sha256", "head_id", "head_hash", "audit_id"}``;
            ``rows`` is 0 (and no archive written) when no row is older than ``before``.

        Raises:
            PermissionDenied: No ``policy:admin`` (the refusal is audited).
            InvalidRequest: A missing or future time, or an unusable archive target.
            Conflict: The chain is broken in the rows to archive, an archive of that name
                exists, the archive did not read back intact, or another retention ran.
        """
        from mlflow_governance.audit import retention
        from mlflow_governance.audit.anchor import current_anchor
        from mlflow_governance.audit.chain import format_time
        from mlflow_governance.audit.writer import DECISION_ALLOW, AuditEntry, append
        from mlflow_governance.clock import utc_now

        self.require(identity, "policy:admin", None, RETAIN_ACTION)
        when = parse_time(before, "before")
        if when is None:
            raise InvalidRequest(
                "before is required: the ISO-8601 time older than which audit rows are "
                "archived and cut, e.g. 2026-01-01T00:00:00Z."
            )
        now = utc_now()
        if retention.utc_naive(when) > retention.utc_naive(now):
            raise InvalidRequest(
                f"before={before!r} is in the future; retention archives rows older than a "
                "time that has passed."
            )
        target = retention.Destination(
            text_arg(archive, "archive", "a directory or s3://BUCKET/PREFIX to archive to")
        )
        engine = self.store.engine
        with engine.connect() as conn:
            anchor = current_anchor(conn)
            last_id = retention.cut_point(conn, anchor, when)
            archived = None
            if last_id > anchor.last_id:
                archived = retention.write_archive(
                    conn, target, anchor, last_id, before=when, now=now, actor=identity.user
                )
        with engine.begin() as conn:
            deleted = 0
            details: dict[str, Any] = {"before": format_time(when), "rows": 0}
            if archived is not None:
                deleted = retention.cut(conn, archived, now=now, actor=identity.user)
                m = archived.manifest
                details.update(
                    rows=deleted,
                    first_id=m.first_id,
                    last_id=m.last_id,
                    last_hash=m.last_hash,
                    manifest=archived.manifest_location,
                    manifest_sha256=archived.manifest_sha256,
                    jsonl_sha256=m.jsonl_sha256,
                )
            reason = (
                f"rows {details['first_id']}..{details['last_id']} archived to "
                f"{details['manifest']} and cut"
                if archived is not None
                else f"no audit row older than {details['before']} left to archive"
            )
            written = append(
                conn,
                [
                    AuditEntry(
                        RETAIN_ACTION,
                        identity,
                        DECISION_ALLOW,
                        reason=reason,
                        rule="policy:admin",
                        details=details,
                    )
                ],
            )
        result: dict[str, Any] = {
            "rows": deleted,
            "first_id": None,
            "last_id": None,
            "last_hash": None,
            "manifest": None,
            "jsonl": None,
            "manifest_sha256": None,
            "jsonl_sha256": None,
            "head_id": None,
            "head_hash": None,
            "audit_id": written[0]["id"] if written else None,
        }
        if archived is not None:
            m = archived.manifest
            result.update(
                first_id=m.first_id,
                last_id=m.last_id,
                last_hash=m.last_hash,
                manifest=archived.manifest_location,
                jsonl=target.location(m.jsonl),
                manifest_sha256=archived.manifest_sha256,
                jsonl_sha256=m.jsonl_sha256,
                head_id=m.head_id,
                head_hash=m.head_hash,
            )
        return result
