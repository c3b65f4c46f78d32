"""contacts, imports and import_errors

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three tables."""
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "contacts",
        sa.Column(
            "id",
            sa.Uuid(),
            primary_key=True,
            server_default=sa.text("gen_random_uuid()") if postgres else None,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column(
            "imported_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("import_id", sa.String(36), nullable=True),
        sa.UniqueConstraint("source", "email", name="contacts_source_email_key"),
    )
    op.create_index("ix_contacts_import_id", "contacts", ["import_id"])
    op.create_table(
        "imports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("format", sa.String(16)),
        sa.Column("filename", sa.String(255)),
        sa.Column("storage_key", sa.String(255)),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("use_resumable", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("total_rows", sa.Integer()),
        sa.Column("processed_rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("inserted_rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("duplicate_rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("rejected_rows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("checkpoint", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
    )
    op.create_index("imports_created_at_idx", "imports", ["created_at"])
    op.create_index("imports_status_idx", "imports", ["status"])
    op.create_table(
        "import_errors",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "import_id",
            sa.String(36),
            sa.ForeignKey("imports.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(64)),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Text()),
        sa.Column("raw", sa.JSON()),
    )
    op.create_index("import_errors_import_row_idx", "import_errors", ["import_id", "row"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("import_errors")
    op.drop_table("imports")
    op.drop_table("contacts")
