"""undo of an import: its counters and checkpoint

Revision ID: 0011_undo_fixes
Revises: 0005_contact_fields
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_undo_fixes"
down_revision = "0005_contact_fields"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the undo's counters, checkpoint and times to imports."""
    with op.batch_alter_table("imports") as table:
        for column in ("undone_rows", "kept_rows"):
            table.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("undo_state", sa.JSON()))
        table.add_column(sa.Column("undo_requested_at", sa.DateTime(timezone=True)))
        table.add_column(sa.Column("undone_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    """Drop what upgrade added."""
    with op.batch_alter_table("imports") as table:
        for column in ("undone_at", "undo_requested_at", "undo_state", "kept_rows", "undone_rows"):
            table.drop_column(column)
