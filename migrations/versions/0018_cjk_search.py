"""CJK search: an index of the Chinese, Japanese and Korean letters of contacts that have any

Revision ID: 0018_cjk_search
Revises: 0017_row_errors_unchecked
Create Date: 2026-12-02
"""

from alembic import op

revision = "0018_cjk_search"
down_revision = "0017_row_errors_unchecked"
branch_labels = None
depends_on = None

# app.search_sample.CJK and app.contact_search.cjk_text, as they stand at this revision: the search
# must name the same expression and the same condition for PostgreSQL to use the index.
CJK = (
    r"\u3005\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    r"\U00020000-\U0003134f"
)
SEARCHED = "(email || E'\\x1f' || name)"
TRIPLED = f"regexp_replace(regexp_replace({SEARCHED}, '[^{CJK}]+', ' ', 'g'), '([^ ])', '\\1\\1\\1', 'g')"
HOLDS_CJK = f"{SEARCHED} ~ '[{CJK}]'"


def upgrade() -> None:
    """Index, for the contacts whose email or name holds a CJK letter, those letters by trigrams,
    each written three times and the rest of the text blanked: one or two letters make a trigram.

    Names in these scripts are often two letters, which hold no trigram of the contacts' search
    index: a search for a rare one read the whole table. Built ``CONCURRENTLY`` and mended after a
    build cut short, as migration 0013 builds the search index.
    """
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches by reading the table
    with op.get_context().autocommit_block():
        invalid = op.get_bind().exec_driver_sql(
            "SELECT 1 FROM pg_index "
            "WHERE indexrelid = to_regclass('contacts_cjk_trgm_idx') AND NOT indisvalid"
        )
        if invalid.first():
            op.execute("DROP INDEX CONCURRENTLY contacts_cjk_trgm_idx")
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_cjk_trgm_idx "
            f"ON contacts USING gin (({TRIPLED}) gin_trgm_ops) WHERE {HOLDS_CJK}"
        )


def downgrade() -> None:
    """Drop the index."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS contacts_cjk_trgm_idx")
