"""Reading the audit log: listing, exporting, verifying, checkpoints and stage history."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from mlflow_governance.application._core import ServiceCore, parse_time, text_arg
from mlflow_governance.exceptions import InvalidRequest
from mlflow_governance.identity import Identity
from mlflow_governance.inputs import MAX_VERSION, parse_id, parse_int

#: Upper bound on rows one listing returns (an export has none).
MAX_AUDIT_ROWS = 5000
DEFAULT_AUDIT_ROWS = 100
DECISIONS = ("allow", "deny", "would-deny")
EXPORT_FORMATS = ("jsonl", "csv")
_TRUE = ("1", "true", "yes", "on")


def export_text(rows: list[dict[str, Any]], fmt: str) -> str:
    """Audit rows as JSON Lines or CSV (every column, hashes included).

    Raises:
        InvalidRequest: An unknown format.
    """
    from mlflow_governance.audit.query import COLUMNS

    if fmt not in EXPORT_FORMATS:
        raise InvalidRequest(f"format={fmt!r} is not an export format (valid: jsonl, csv).")
    buffer = io.StringIO()
    if fmt == "jsonl":
        for row in rows:
            buffer.write(json.dumps(row, sort_keys=True, default=str) + "\n")
        return buffer.getvalue()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "details": json.dumps(row["details"], sort_keys=True)})
    return buffer.getvalue()


class AuditActions(ServiceCore):
    """The audit log and stage history, for holders of ``audit:read``."""

    def _filter(self, args: Mapping[str, Any], *, limit: int | None) -> Any:
        from mlflow_governance.audit.query import AuditFilter

        decision = args.get("decision") or None
        if decision is not None and decision not in DECISIONS:
            raise InvalidRequest(
                f"decision={decision!r} is not a decision (valid: {', '.join(DECISIONS)})."
            )
        raw_version = args.get("version")
        newest = args.get("newest_first")
        return AuditFilter(
            model=args.get("model") or None,
            version=parse_id(raw_version, "version", maximum=MAX_VERSION)
            if raw_version not in (None, "")
            else None,
            actor=args.get("actor") or None,
            workspace=args.get("workspace") or None,
            action=args.get("action") or None,
            decision=decision,
            since=parse_time(args.get("since"), "since"),
            until=parse_time(args.get("until"), "until"),
            limit=limit,
            newest_first=newest is True or str(newest or "").lower() in _TRUE,
        )

    def audit_list(self, identity: Identity, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Audit rows matching the filters of ``audit list``.

        Args:
            identity: The caller (``audit:read`` on the model filtered, else on every model).
            args: model, version, actor, workspace, action, decision, since, until,
                limit (default 100, at most 5000), newest_first.
        """
        from mlflow_governance.audit.query import list_rows

        self.require(identity, "audit:read", args.get("model") or None, "read_audit")
        raw_limit = args.get("limit")
        limit = (
            parse_int(raw_limit, "limit", minimum=1)
            if raw_limit not in (None, "")
            else DEFAULT_AUDIT_ROWS
        )
        flt = self._filter(args, limit=min(limit, MAX_AUDIT_ROWS))
        with self.store.engine.connect() as conn:
            return list_rows(conn, flt)

    def audit_export(self, identity: Identity, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every audit row matching the filters, oldest first, with no row limit."""
        from mlflow_governance.audit.query import list_rows

        self.require(identity, "audit:read", args.get("model") or None, "export_audit")
        flt = self._filter({**args, "newest_first": False}, limit=None)
        with self.store.engine.connect() as conn:
            return list_rows(conn, flt)

    def audit_verify(
        self, identity: Identity, checkpoint: Mapping[str, Any] | str | None = None
    ) -> dict[str, Any]:
        """Check the whole hash chain, and against a checkpoint when one is given.

        Needs ``audit:read`` on every model: the answer speaks of the whole log.

        Returns:
            ``{"ok", "rows", "head_id", "head_hash", "broken_id", "problem"}``.
        """
        from mlflow_governance.audit.query import Checkpoint, verify

        self.require(identity, "audit:read", None, "verify_audit")
        mark = None
        if checkpoint is not None:
            text = checkpoint if isinstance(checkpoint, str) else json.dumps(dict(checkpoint))
            mark = Checkpoint.from_json(text, "the checkpoint")
        with self.store.engine.connect() as conn:
            result = verify(conn, mark)
        return {
            "ok": result.ok,
            "rows": result.rows,
            "head_id": result.head_id,
            "head_hash": result.head_hash,
            "broken_id": result.broken_id,
            "problem": result.problem,
        }

    def audit_checkpoint(self, identity: Identity) -> dict[str, Any]:
        """The chain head (row count and hash) to keep outside the database.

        Raises:
            Conflict: The chain is broken; no checkpoint of it is given.
        """
        from mlflow_governance.audit.query import make_checkpoint
        from mlflow_governance.exceptions import Conflict

        self.require(identity, "audit:read", None, "checkpoint_audit")
        with self.store.engine.connect() as conn:
            checkpoint, result = make_checkpoint(conn)
        if not result.ok:
            raise Conflict(
                f"Refusing to checkpoint a broken chain: {result.problem}. Run "
                "'mlflow-governance audit verify' and investigate."
            )
        data: dict[str, Any] = json.loads(checkpoint.to_json())
        return data

    def history(self, identity: Identity, model: Any, at: Any = None) -> list[dict[str, Any]]:
        """Stage and alias changes of a model, oldest first, or its holders ``at`` a time."""
        from mlflow_governance.audit.history import history, holders

        name = text_arg(model, "model", "the registered model whose history to show")
        self.require(identity, "audit:read", name, "read_history")
        when = parse_time(at, "at")
        workspace = self.store.active_workspace()
        with self.store.engine.connect() as conn:
            if when is None:
                return [event.to_dict() for event in history(conn, name, workspace=workspace)]
            found = holders(conn, name, when, workspace=workspace)
        return [dict(holding.__dict__) for holding in found]
