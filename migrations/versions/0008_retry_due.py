"""imports: when a retry is due, progress for stall detection, and which process runs the import

Revision ID: 0008_retry_due
Revises: 0007_webhooks
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_retry_due"
down_revision = "0007_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add retry_at, retries, progress_at and run_by to imports."""
    op.add_column("imports", sa.Column("retry_at", sa.DateTime(timezone=True)))
    op.add_column("imports", sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("imports", sa.Column("progress_at", sa.DateTime(timezone=True)))
    op.add_column("imports", sa.Column("run_by", sa.String(255)))
    op.create_index("imports_status_retry_at_idx", "imports", ["status", "retry_at"])


def downgrade() -> None:
    """Drop the four columns."""
    op.drop_index("imports_status_retry_at_idx", table_name="imports")
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("run_by")
        batch.drop_column("progress_at")
        batch.drop_column("retries")
        batch.drop_column("retry_at")
