"""Tables the plugin owns, in their own metadata so MLflow's migrations never see them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

# MySQL's DATETIME drops fractions unless asked; the chain hashes microseconds, so the
# database must give back exactly what was written.
UTC_MICROS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

audit_log = sa.Table(
    "governance_audit_log",
    metadata,
    # Assigned from the chain head under its lock, so ids are gapless and follow chain order.
    # On SQLite an INTEGER key is the rowid itself: one index page less for every write.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("time", UTC_MICROS, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("identity_source", sa.String(32), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256)),
    sa.Column("version", sa.Integer),
    sa.Column("stage_before", sa.String(32)),
    sa.Column("stage_after", sa.String(32)),
    sa.Column("alias", sa.String(256)),
    sa.Column("alias_before", sa.Integer),
    sa.Column("alias_after", sa.Integer),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("rule", sa.String(256)),
    sa.Column("request_id", sa.BigInteger),
    sa.Column("details", sa.Text),
    sa.Column("client_address", sa.String(64)),
    sa.Column("user_agent", sa.String(512)),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # MLflow workspace of the change (workspace-aware servers only; NULL otherwise).
    sa.Column("workspace", sa.String(63)),
    # A model's rows in chain order (migration 0008); on PostgreSQL it also covers what
    # history's first pass reads, so that pass never touches the table.
    sa.Index(
        "ix_governance_audit_model_id",
        "model",
        "id",
        postgresql_include=[
            "time",
            "decision",
            "workspace",
            "version",
            "stage_after",
            "alias",
            "alias_before",
            "alias_after",
        ],
    ),
    sa.Index("ix_governance_audit_time", "time"),
    sa.Index("ix_governance_audit_actor", "actor"),
    # History looks for renames; PostgreSQL and SQLite index those rows alone (0008),
    # MySQL, without partial indexes, keeps ix_governance_audit_action.
    sa.Index(
        "ix_governance_audit_renames",
        "id",
        postgresql_where=sa.text("action = 'rename_registered_model'"),
        sqlite_where=sa.text("action = 'rename_registered_model'"),
    ),
)

# One row (id = 1): the newest chain position. Writers update it first, which takes a row
# lock (PostgreSQL, MySQL) or the database write lock (SQLite), so the chain stays linear.
audit_head = sa.Table(
    "governance_audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

#: History's search for renames, as the partial index of migration 0008 states it.
RENAME_ROWS = "action = 'rename_registered_model'"

HEAD_ROW_ID = 1
GENESIS_HASH = "0" * 64


def restore_head(connection: sa.Connection) -> bool:
    """Re-create a deleted chain head from the newest audit row.

    Returns:
        True when the head was missing and has been restored.
    """
    if connection.execute(sa.select(audit_head.c.id)).first() is not None:
        return False
    newest = connection.execute(
        sa.select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
    ).first()
    seq, head_hash = (int(newest.id), newest.hash) if newest else (0, GENESIS_HASH)
    connection.execute(sa.insert(audit_head).values(id=HEAD_ROW_ID, seq=seq, hash=head_hash))
    return True


# ---------------------------------------------------------------- the transactional outbox

#: Outbox delivery states.
EVENT_PENDING = "pending"
EVENT_DELIVERED = "delivered"
EVENT_DEAD = "dead"
EVENT_STATES = (EVENT_PENDING, EVENT_DELIVERED, EVENT_DEAD)

outbox = sa.Table(
    "governance_outbox",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    # Stable across redeliveries (consumers de-duplicate on it): derived from the audit
    # row the event comes from.
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("type", sa.String(64), nullable=False),
    # As the audit row stores it (its safe form when the name was unstorable).
    sa.Column("model", audit_log.c.model.type),
    sa.Column("version", sa.Integer),
    sa.Column("audit_id", sa.BigInteger),
    sa.Column("time", UTC_MICROS, nullable=False),
    # JSON with non-ASCII escaped; the audit row's reason alone may fill MySQL's TEXT.
    sa.Column("data", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default=EVENT_PENDING),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTC_MICROS, nullable=False),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("claimed_until", UTC_MICROS),
    sa.Column("delivered_to", sa.Text),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", UTC_MICROS),
    sa.Index("ix_governance_outbox_due", "state", "next_attempt_at"),
    sa.Index("ix_governance_outbox_model", "model", "id"),
)
