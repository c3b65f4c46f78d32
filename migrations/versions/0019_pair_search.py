"""Pair search: an index of the few contacts in which two Latin letters stand between two others

Revision ID: 0019_pair_search
Revises: 0018_cjk_search
Create Date: 2026-12-02
"""

from alembic import op

revision = "0019_pair_search"
down_revision = "0018_cjk_search"
branch_labels = None
depends_on = None

# app.search_sample.PAIR_RESIDUE and app.contact_search.searched_text, as they stand at this
# revision: the search must name the same condition for PostgreSQL to use the index.
SEARCHED = "(email || E'\\x1f' || name)"
PAIR_RESIDUE = r"[^a-zA-Z0-9\x1f .@_+'-][a-zA-Z0-9]{2}[^a-zA-Z0-9\x1f .@_+'-]|[\u0130\u212a]"
QUOTED = PAIR_RESIDUE.replace("'", "''")


def upgrade() -> None:
    """Index the ids of the contacts that the trigram index cannot find by a term of two letters.

    Two letters or digits hold no trigram of their own, but the trigram index holds every one
    with the letter before or after it, or the start or end of a word: only a pair between two
    other letters outside ASCII (the `zt` of `Öztürk`), or a letter that lower-cases to ASCII,
    is out of its reach. A search of two such letters asks the trigram index for the rest and
    this index for these (0.2% of the benchmark's contacts). Built ``CONCURRENTLY`` and mended
    after a build cut short, as migration 0013 builds the search index.
    """
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches by reading the table
    with op.get_context().autocommit_block():
        invalid = op.get_bind().exec_driver_sql(
            "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('contacts_pair_idx') AND NOT indisvalid"
        )
        if invalid.first():
            op.execute("DROP INDEX CONCURRENTLY contacts_pair_idx")
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_pair_idx "
            f"ON contacts (id) WHERE {SEARCHED} ~ '{QUOTED}'"
        )


def downgrade() -> None:
    """Drop the index."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS contacts_pair_idx")
