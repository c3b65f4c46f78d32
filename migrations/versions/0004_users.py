"""users who sign in to the pages

Revision ID: 0004_users
Revises: 0003_idempotency
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_users"
down_revision = "0003_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the users table."""
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the users table."""
    op.drop_table("users")
