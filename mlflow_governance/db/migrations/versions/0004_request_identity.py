"""Requests are bound to the identity of the version they move, not to its name alone.

A registered model deleted (or renamed away) and made again under the same name starts
its version numbers again at 1; a request approved for the old version 1 must never apply
to the new one. The creation times MLflow keeps for the model and the version, with the
workspace, tell the two apart.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("governance_requests") as batch:
        batch.add_column(sa.Column("workspace", sa.String(63)))
        batch.add_column(sa.Column("model_created", sa.BigInteger))
        batch.add_column(sa.Column("version_created", sa.BigInteger))
    _bind_open_requests()


def _bind_open_requests() -> None:
    """Bind the open requests of an older release to the versions they name today.

    Only where the name is unambiguous (one registered model of that name): the version
    a pending request named is, as far as anyone can tell now, the one it was filed for.
    Closed requests stay unbound; they never apply again anyway.
    """
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not (inspector.has_table("registered_models") and inspector.has_table("model_versions")):
        return
    req = sa.table(
        "governance_requests",
        sa.column("model"),
        sa.column("version"),
        sa.column("state"),
        sa.column("model_created"),
        sa.column("version_created"),
    )
    rm = sa.table("registered_models", sa.column("name"), sa.column("creation_time"))
    mv = sa.table(
        "model_versions", sa.column("name"), sa.column("version"), sa.column("creation_time")
    )
    one_model = (
        sa.select(sa.func.count()).select_from(rm).where(rm.c.name == req.c.model)
    ).scalar_subquery() == 1
    op.execute(
        sa.update(req)
        .where(req.c.state.in_(["pending", "approved"]), one_model)
        .values(
            model_created=sa.select(sa.func.max(rm.c.creation_time))
            .where(rm.c.name == req.c.model)
            .scalar_subquery(),
            version_created=sa.select(sa.func.max(mv.c.creation_time))
            .where(mv.c.name == req.c.model, mv.c.version == req.c.version)
            .scalar_subquery(),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("governance_requests") as batch:
        batch.drop_column("version_created")
        batch.drop_column("model_created")
        batch.drop_column("workspace")
