"""sessions that sign-out ends, and who owns each upload, import and idempotency key

Revision ID: 0009_sessions_owners
Revises: 0008_retry_due
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_sessions_owners"
down_revision = "0008_retry_due"
branch_labels = None
depends_on = None

PRINCIPAL = 320  # "user:" and an email address, or "token:" and a token's fingerprint


def upgrade() -> None:
    """Add the session generation, the owners, and key idempotency keys by principal."""
    op.add_column("users", sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("imports", sa.Column("created_by", sa.String(PRINCIPAL)))
    op.add_column("uploads", sa.Column("owner", sa.String(PRINCIPAL)))
    # A new table rather than a changed primary key: the same steps on PostgreSQL and SQLite.
    op.create_table(
        "idempotency_keys_scoped",
        sa.Column("principal", sa.String(PRINCIPAL), nullable=False, server_default=""),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="in_flight"),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("import_id", sa.String(36), sa.ForeignKey("imports.id", ondelete="CASCADE")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key"),
    )
    op.execute(
        "INSERT INTO idempotency_keys_scoped (principal, key, status, fingerprint, import_id, created_at) "
        "SELECT '', key, status, fingerprint, import_id, created_at FROM idempotency_keys"
    )
    op.drop_table("idempotency_keys")
    op.rename_table("idempotency_keys_scoped", "idempotency_keys")
    op.create_index("idempotency_keys_created_at_idx", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    """Remove them again (keys of every principal but the anonymous one are dropped)."""
    op.create_table(
        "idempotency_keys_unscoped",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="in_flight"),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("import_id", sa.String(36), sa.ForeignKey("imports.id", ondelete="CASCADE")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        "INSERT INTO idempotency_keys_unscoped (key, status, fingerprint, import_id, created_at) "
        "SELECT key, status, fingerprint, import_id, created_at FROM idempotency_keys WHERE principal = ''"
    )
    op.drop_table("idempotency_keys")
    op.rename_table("idempotency_keys_unscoped", "idempotency_keys")
    op.create_index("idempotency_keys_created_at_idx", "idempotency_keys", ["created_at"])
    op.drop_column("uploads", "owner")
    op.drop_column("imports", "created_by")
    op.drop_column("users", "session_generation")
