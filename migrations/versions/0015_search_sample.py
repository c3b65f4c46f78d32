"""search sample: a few tens of thousands of contacts' searched text, which plans the searches

Revision ID: 0015_search_sample
Revises: 0014_small_imports
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_search_sample"
down_revision = "0014_small_imports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add search_samples: one row, made again by the worker as the contacts grow (app.search_sample)."""
    op.create_table(
        "search_samples",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("contacts", sa.BigInteger, nullable=False),
        sa.Column("texts", sa.Text, nullable=False),
        sa.Column("trigrams", sa.Text, nullable=False),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the table; searches are then planned by PostgreSQL alone, as before."""
    op.drop_table("search_samples")
