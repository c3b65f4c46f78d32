"""webhooks: endpoints, the event outbox, messages and their attempts

Revision ID: 0007_webhooks
Revises: 0006_mappings
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_webhooks"
down_revision = "0006_mappings"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create the four webhook tables."""
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.String(255), nullable=False, server_default=""),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("disabled_reason", sa.Text()),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("old_secrets", sa.JSON(), nullable=False),
        _time("failing_since"),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("import_id", sa.String(36), sa.ForeignKey("imports.id", ondelete="CASCADE")),
        sa.Column("payload", sa.Text(), nullable=False),
        _time("created_at", nullable=False),
    )
    op.create_index("webhook_events_import_idx", "webhook_events", ["import_id"])
    op.create_table(
        "webhook_messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "event_id", sa.String(40), sa.ForeignKey("webhook_events.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "endpoint_id",
            sa.String(36),
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        _time("next_attempt_at"),
        _time("lease_until"),
        sa.Column("lease_token", sa.String(32)),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        _time("delivered_at"),
        _time("created_at", nullable=False),
    )
    op.create_index("webhook_messages_due_idx", "webhook_messages", ["status", "next_attempt_at"])
    op.create_index("webhook_messages_endpoint_idx", "webhook_messages", ["endpoint_id", "created_at"])
    op.create_index("webhook_messages_event_idx", "webhook_messages", ["event_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "message_id",
            sa.String(36),
            sa.ForeignKey("webhook_messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        _time("started_at", nullable=False),
        sa.Column("duration_ms", sa.Integer()),
        sa.Column("status_code", sa.Integer()),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("response", sa.Text()),
        sa.Column("error", sa.Text()),
    )
    op.create_index("webhook_attempts_message_idx", "webhook_attempts", ["message_id", "number"])


def downgrade() -> None:
    """Drop the webhook tables."""
    for table in ("webhook_attempts", "webhook_messages", "webhook_events", "webhook_endpoints"):
        op.drop_table(table)
