"""Source order: the contacts of a source in id order

Revision ID: 0020_source_order
Revises: 0019_pair_search
Create Date: 2026-12-03
"""

from alembic import op

revision = "0020_source_order"
down_revision = "0019_pair_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index the contacts by source, then id: the contacts page of a source, a keyset page at a time.

    Without it PostgreSQL pages a source by reading the primary key in id order and keeping that
    source's contacts, which is quick for a source spread over the table and slow for one imported
    after the others: 516 ms at 2.5M contacts for a source of 500,000 imported last, as every other
    contact came first. Built ``CONCURRENTLY`` and mended after a build cut short, as migration 0013
    builds the search index; on SQLite, as an index is.
    """
    if op.get_bind().dialect.name != "postgresql":
        op.create_index("contacts_source_id_idx", "contacts", ["source", "id"])
        return
    with op.get_context().autocommit_block():
        invalid = op.get_bind().exec_driver_sql(
            "SELECT 1 FROM pg_index "
            "WHERE indexrelid = to_regclass('contacts_source_id_idx') AND NOT indisvalid"
        )
        if invalid.first():
            op.execute("DROP INDEX CONCURRENTLY contacts_source_id_idx")
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_source_id_idx ON contacts (source, id)")


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("contacts_source_id_idx", "contacts")
