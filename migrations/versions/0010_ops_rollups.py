"""rollups for the ops page: outcomes per minute, rejection reasons, ended imports per hour

Revision ID: 0010_ops_rollups
Revises: 0009_sessions_owners
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_ops_rollups"
down_revision = "0009_sessions_owners"
branch_labels = None
depends_on = None


def _import_id() -> sa.Column:
    return sa.Column(
        "import_id",
        sa.String(36),
        sa.ForeignKey("imports.id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    """Create the rollup tables and index when imports started and ended."""
    op.create_table(
        "import_minutes",
        sa.Column("minute", sa.DateTime(timezone=True), primary_key=True),
        _import_id(),
        *[
            sa.Column(outcome, sa.BigInteger, nullable=False, server_default="0")
            for outcome in ("inserted", "updated", "unchanged", "duplicate", "rejected")
        ],
    )
    op.create_table(
        "import_reasons",
        _import_id(),
        sa.Column("field", sa.String(64), primary_key=True),
        sa.Column("message", sa.String(300), primary_key=True),
        sa.Column("rows", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("import_reasons_reason_idx", "import_reasons", ["field", "message", "last_at"])
    op.create_table(
        "reason_hours",
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("field", sa.String(64), primary_key=True),
        sa.Column("message", sa.String(300), primary_key=True),
        sa.Column("rows", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("imports", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "import_hours",
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        *[
            sa.Column(status, sa.Integer, nullable=False, server_default="0")
            for status in ("completed", "failed", "cancelled")
        ],
        sa.Column("durations", sa.JSON, nullable=False),
    )
    op.create_index("imports_started_at_idx", "imports", ["started_at"])
    op.create_index("imports_finished_at_idx", "imports", ["finished_at"])


def downgrade() -> None:
    """Remove them again."""
    op.drop_index("imports_finished_at_idx", table_name="imports")
    op.drop_index("imports_started_at_idx", table_name="imports")
    op.drop_table("import_hours")
    op.drop_table("reason_hours")
    op.drop_table("import_reasons")
    op.drop_table("import_minutes")
