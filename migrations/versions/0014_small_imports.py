"""small JSON imports: the request body kept with its import, and the index their claim reads

Revision ID: 0014_small_imports
Revises: 0013_contact_search
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_small_imports"
down_revision = "0013_contact_search"
branch_labels = None
depends_on = None

_WAITING = "status = 'queued' AND body IS NOT NULL"


def upgrade() -> None:
    """Add imports.body and a partial index of the small imports waiting to run, oldest first."""
    op.add_column("imports", sa.Column("body", sa.LargeBinary()))
    op.create_index(
        "imports_small_queued_idx",
        "imports",
        ["created_at"],
        postgresql_where=sa.text(_WAITING),
        sqlite_where=sa.text(_WAITING),
    )


def downgrade() -> None:
    """Drop the index and the column (a small import still queued then has nothing to read)."""
    op.drop_index("imports_small_queued_idx", table_name="imports")
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("body")
