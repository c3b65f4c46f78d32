"""contact fields, merge modes, warnings and the previous values of updated contacts

Revision ID: 0005_contact_fields
Revises: 0004_users
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_contact_fields"
down_revision = "0004_users"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Add phone, company, title, attributes and updated_at to contacts; modes and counters to imports."""
    with op.batch_alter_table("contacts") as table:
        table.add_column(sa.Column("phone", sa.String(64)))
        table.add_column(sa.Column("company", sa.Text()))
        table.add_column(sa.Column("title", sa.Text()))
        table.add_column(sa.Column("attributes", _JSON))
        table.add_column(sa.Column("updated_at", sa.DateTime(timezone=True)))
    with op.batch_alter_table("imports") as table:
        table.add_column(sa.Column("mode", sa.String(8), nullable=False, server_default="skip"))
        table.add_column(sa.Column("mapping", sa.JSON()))
        for column in ("updated_rows", "unchanged_rows", "warning_rows"):
            table.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("import_errors") as table:
        table.add_column(sa.Column("level", sa.String(8), nullable=False, server_default="error"))
    op.create_table(
        "contact_changes",
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
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("previous", _JSON),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("import_id", "contact_id", name="contact_changes_import_contact_key"),
    )
    op.create_index("contact_changes_contact_idx", "contact_changes", ["contact_id"])


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_index("contact_changes_contact_idx", "contact_changes")
    op.drop_table("contact_changes")
    with op.batch_alter_table("import_errors") as table:
        table.drop_column("level")
    with op.batch_alter_table("imports") as table:
        for column in ("warning_rows", "unchanged_rows", "updated_rows", "mapping", "mode"):
            table.drop_column(column)
    with op.batch_alter_table("contacts") as table:
        for column in ("updated_at", "attributes", "title", "company", "phone"):
            table.drop_column(column)
