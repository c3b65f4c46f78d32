"""skipped rows, the header row, sheet and mapping origin of an import; mappings saved per source

Revision ID: 0006_mappings
Revises: 0005_contact_fields
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_mappings"
down_revision = "0005_contact_fields"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the import's detection columns and the saved mappings table."""
    with op.batch_alter_table("imports") as batch:
        batch.add_column(sa.Column("skipped_rows", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("header_row", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sheet", sa.String(255), nullable=True))
        batch.add_column(sa.Column("mapping_from", sa.String(16), nullable=True))
    op.create_table(
        "source_mappings",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("mapping", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the saved mappings and the import's detection columns."""
    op.drop_table("source_mappings")
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("mapping_from")
        batch.drop_column("sheet")
        batch.drop_column("header_row")
        batch.drop_column("skipped_rows")
