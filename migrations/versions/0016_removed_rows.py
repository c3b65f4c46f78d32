"""removed rows: the contacts an undo removed, so that a source's contacts are counted from its imports

Revision ID: 0016_removed_rows
Revises: 0015_search_sample
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_removed_rows"
down_revision = "0015_search_sample"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add imports.removed_rows, filled in for the undos already run.

    A contact is made only by an import (``inserted_rows``) and removed only by its undo, and keeps
    the id of the import that inserted it: the contacts an undo removed are those its import
    inserted that are no longer there.
    """
    op.add_column("imports", sa.Column("removed_rows", sa.Integer, nullable=False, server_default="0"))
    op.execute(
        "UPDATE imports SET removed_rows = inserted_rows - "
        "(SELECT count(*) FROM contacts WHERE contacts.import_id = imports.id) "
        "WHERE undo_state IS NOT NULL"
    )


def downgrade() -> None:
    """Drop the column; the sources page then counts the contacts themselves."""
    op.drop_column("imports", "removed_rows")
