"""imports.sha256 and idempotency_keys

Revision ID: 0003_idempotency
Revises: 0002_uploads
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_idempotency"
down_revision = "0002_uploads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the file hash to imports and the table of idempotency keys."""
    op.add_column("imports", sa.Column("sha256", sa.String(64)))
    op.create_index("imports_source_sha256_idx", "imports", ["source", "sha256"])
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="in_flight"),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column(
            "import_id",
            sa.String(36),
            sa.ForeignKey("imports.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("idempotency_keys_created_at_idx", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    """Remove them again."""
    op.drop_table("idempotency_keys")
    op.drop_index("imports_source_sha256_idx", table_name="imports")
    with op.batch_alter_table("imports") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("sha256")
