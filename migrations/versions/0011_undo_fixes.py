"""undo of an import (its counters and checkpoint), fixes of rejected rows, contact search indexes

Revision ID: 0011_undo_fixes
Revises: 0010_ops_rollups
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011_undo_fixes"
down_revision = "0010_ops_rollups"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Add the undo's counters, checkpoint and times to imports; the fixes of rejected rows."""
    with op.batch_alter_table("imports") as table:
        table.add_column(sa.Column("fixes_of", sa.String(36)))
        for column in ("undone_rows", "kept_rows"):
            table.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("undo_state", sa.JSON()))
        table.add_column(sa.Column("undo_requested_at", sa.DateTime(timezone=True)))
        table.add_column(sa.Column("undone_at", sa.DateTime(timezone=True)))
    op.create_index("ix_imports_fixes_of", "imports", ["fixes_of"])
    op.create_table(
        "row_fixes",
        sa.Column(
            "import_id",
            sa.String(36),
            sa.ForeignKey("imports.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("row", sa.Integer(), primary_key=True),
        sa.Column("cells", _JSON),
        sa.Column("problem", sa.Text()),
        sa.Column("dismissed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("fixed_in", sa.String(36)),
    )
    op.create_index("ix_row_fixes_fixed_in", "row_fixes", ["fixed_in"])
    # An import's contacts in id order, so each batch of an undo is a short range of the index.
    op.drop_index("ix_contacts_import_id", "contacts")
    op.create_index("ix_contacts_import_id", "contacts", ["import_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        # Search by a substring (or prefix) of the email or the name, in either case: trigram indexes
        # answer ILIKE '%ada%' from the index at any table size.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for column in ("email", "name"):
            op.execute(
                f"CREATE INDEX contacts_{column}_trgm_idx ON contacts USING gin ({column} gin_trgm_ops)"
            )


def downgrade() -> None:
    """Drop what upgrade added (the pg_trgm extension stays: other schemas may use it)."""
    if op.get_bind().dialect.name == "postgresql":
        for column in ("email", "name"):
            op.execute(f"DROP INDEX IF EXISTS contacts_{column}_trgm_idx")
    op.drop_index("ix_contacts_import_id", "contacts")
    op.create_index("ix_contacts_import_id", "contacts", ["import_id"])
    op.drop_index("ix_row_fixes_fixed_in", "row_fixes")
    op.drop_table("row_fixes")
    op.drop_index("ix_imports_fixes_of", "imports")
    with op.batch_alter_table("imports") as table:
        for column in (
            "fixes_of",
            "undone_at",
            "undo_requested_at",
            "undo_state",
            "kept_rows",
            "undone_rows",
        ):
            table.drop_column(column)
