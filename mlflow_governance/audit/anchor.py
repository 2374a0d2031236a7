"""Where the audit chain starts after retention cut its oldest rows.

``mlflow-governance audit retain`` archives rows ``first_id..last_id`` and deletes them.
In the same transaction it records an anchor: the id and hash of the last archived row,
where the archive is and the sha256 of its manifest, who cut and when. The first row left
in the table must then link to ``last_hash``, so ``audit verify`` starts there instead of
at the genesis hash, and the append-only triggers allow a DELETE only of rows at or below
the newest anchor's ``last_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from mlflow_governance.audit.tables import GENESIS_HASH, UTC_MICROS, metadata

audit_anchor = sa.Table(
    "governance_audit_anchor",
    metadata,
    # One row per retention run; the newest (highest last_id) is where the chain starts.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("first_id", sa.BigInteger, nullable=False),
    sa.Column("last_id", sa.BigInteger, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    # The chain head (governance_audit_head) when the rows were cut.
    sa.Column("head_id", sa.BigInteger, nullable=False),
    sa.Column("head_hash", sa.String(64), nullable=False),
    sa.Column("cut_before", UTC_MICROS, nullable=False),
    sa.Column("archive", sa.String(1024), nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("archived_by", sa.String(256), nullable=False),
    sa.Column("archived_at", UTC_MICROS, nullable=False),
)


@dataclass(frozen=True)
class Anchor:
    """Where verification of the remaining rows starts.

    Attributes:
        last_id: The last row cut (0 when nothing was ever cut).
        last_hash: Its hash (the genesis hash when nothing was cut).
        archive: Where those rows went, or None.
        manifest_sha256: The sha256 of the archive's manifest, or None.
    """

    last_id: int = 0
    last_hash: str = GENESIS_HASH
    archive: str | None = None
    manifest_sha256: str | None = None

    @property
    def first_id(self) -> int:
        """The id the first remaining row must have."""
        return self.last_id + 1


def current_anchor(connection: sa.Connection) -> Anchor:
    """The newest anchor, or the genesis when retention never ran."""
    c = audit_anchor.c
    row = connection.execute(
        sa.select(c.last_id, c.last_hash, c.archive, c.manifest_sha256)
        .order_by(c.last_id.desc())
        .limit(1)
    ).first()
    if row is None:
        return Anchor()
    return Anchor(int(row.last_id), str(row.last_hash), row.archive, row.manifest_sha256)
