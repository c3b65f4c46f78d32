"""uploads: resumable (tus) uploads

Revision ID: 0002_uploads
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_uploads"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the uploads table."""
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("metadata_header", sa.Text()),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("filename", sa.String(255)),
        sa.Column("use_resumable", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("import_id", sa.String(36)),
    )
    op.create_index("uploads_expires_at_idx", "uploads", ["expires_at"])


def downgrade() -> None:
    """Drop the uploads table."""
    op.drop_table("uploads")
