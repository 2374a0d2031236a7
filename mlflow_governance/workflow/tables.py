"""Tables of the approval workflow and of applied policies (same metadata as the audit log)."""

from __future__ import annotations

import sqlalchemy as sa

from mlflow_governance.audit.tables import UTC_MICROS, metadata

#: Request states (SPEC section 4).
PENDING = "pending"
APPROVED = "approved"
APPLIED = "applied"
REJECTED = "rejected"
CANCELLED = "cancelled"
EXPIRED = "expired"
SUPERSEDED = "superseded"
OPEN_STATES = (PENDING, APPROVED)
STATES = (PENDING, APPROVED, APPLIED, REJECTED, CANCELLED, EXPIRED, SUPERSEDED)

#: Request kinds: an ordinary promotion, a rollback to a previous holder, and the review
#: a break-glass move leaves open until approved after the fact.
KIND_PROMOTION = "promotion"
KIND_ROLLBACK = "rollback"
KIND_REVIEW = "review"


def _id_column() -> sa.Column[int]:
    # INTEGER on SQLite so the key is the rowid (and autoincrements there).
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


requests = sa.Table(
    "governance_requests",
    metadata,
    _id_column(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("target_kind", sa.String(8), nullable=False),  # "stage" or "alias"
    sa.Column("target", sa.String(256), nullable=False),
    sa.Column("gate", sa.String(128)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("requester", sa.String(256), nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("archive_existing", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTC_MICROS, nullable=False),
    sa.Column("updated_at", UTC_MICROS, nullable=False),
    sa.Column("closed_by", sa.String(256)),
    sa.Column("closed_reason", sa.Text),
    sa.Column("applied_at", UTC_MICROS),
    sa.Column("applied_by", sa.String(256)),
    # The identity of what the request moves (migration 0004): the MLflow workspace and
    # the creation times (ms) of the registered model and the version. NULL on rows
    # written before 0004, which then match no version and can never apply.
    sa.Column("workspace", sa.String(63)),
    sa.Column("model_created", sa.BigInteger),
    sa.Column("version_created", sa.BigInteger),
    sa.Index("ix_governance_requests_model_state", "model", "state"),
    sa.Index("ix_governance_requests_state", "state"),
)

approvals = sa.Table(
    "governance_approvals",
    metadata,
    _id_column(),
    sa.Column(
        "request_id",
        sa.BigInteger,
        sa.ForeignKey("governance_requests.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("approver", sa.String(256), nullable=False),
    sa.Column("groups", sa.Text),  # JSON list: header groups at approval time
    sa.Column("decision", sa.String(16), nullable=False),  # "approve" or "reject"
    sa.Column("comment", sa.Text),
    sa.Column("time", UTC_MICROS, nullable=False),
    # One voice per approver and request, enforced by the database under concurrency.
    sa.UniqueConstraint("request_id", "approver", name="uq_governance_approval_approver"),
)

policies = sa.Table(
    "governance_policies",
    metadata,
    _id_column(),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("source", sa.String(512)),
    sa.Column("applied_by", sa.String(256), nullable=False),
    sa.Column("applied_at", UTC_MICROS, nullable=False),
)
