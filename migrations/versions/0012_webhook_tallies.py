"""webhook attempts whose log was forgotten, tallied by outcome for the delivery counter

Revision ID: 0012_webhook_tallies
Revises: 0011_undo_fixes
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_webhook_tallies"
down_revision = "0011_undo_fixes"
branch_labels = None
depends_on = None

# Every outcome has its row from the start, so forgetting only ever updates one.
OUTCOMES = ("success", "failure", "gone", "timeout", "unreachable", "refused", "interrupted")


def upgrade() -> None:
    """Add the tallies, one row per outcome at zero."""
    tallies = op.create_table(
        "webhook_attempt_tallies",
        sa.Column("outcome", sa.String(16), primary_key=True),
        sa.Column("forgotten", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.bulk_insert(tallies, [{"outcome": outcome, "forgotten": 0} for outcome in OUTCOMES])


def downgrade() -> None:
    """Drop the tallies."""
    op.drop_table("webhook_attempt_tallies")
