"""Storing validated contacts and rejected rows in batches, at COPY speed on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.models import RowError
from app.validation import Contact, Problem

_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS contact_staging "
    "(pos integer, name text, email text) ON COMMIT DELETE ROWS"
)
# Keep the first row of each email in the batch; ON CONFLICT skips emails the source already has.
_MERGE = (
    "INSERT INTO contacts (id, name, email, source, imported_at, import_id) "
    "SELECT gen_random_uuid(), name, email, %(source)s, now(), %(import_id)s FROM ("
    "  SELECT DISTINCT ON (email) name, email FROM contact_staging ORDER BY email, pos"
    ") AS batch ON CONFLICT (source, email) DO NOTHING"
)


def store_contacts(session: Session, import_id: str, source: str, contacts: Sequence[Contact]) -> int:
    """Insert the contacts whose email the source does not have yet; return how many were new."""
    if not contacts:
        return 0
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        with connection.connection.driver_connection.cursor() as cursor:
            cursor.execute(_STAGING)
            with cursor.copy("COPY contact_staging (pos, name, email) FROM STDIN") as copy:
                for position, contact in enumerate(contacts):
                    copy.write_row((position, contact.name, contact.email))
            cursor.execute(_MERGE, {"source": source, "import_id": import_id})
            return cursor.rowcount
    cursor = connection.exec_driver_sql(
        "INSERT OR IGNORE INTO contacts (id, name, email, source, imported_at, import_id) "
        "VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP, ?)",
        [(uuid.uuid4().hex, c.name, c.email, source, import_id) for c in contacts],
    )
    return cursor.rowcount


def store_row_errors(
    session: Session,
    import_id: str,
    rejected: Sequence[tuple[int, Problem, dict | None]],
) -> None:
    """Keep every problem of every rejected row, with the row as it came."""
    if not rejected:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        with connection.connection.driver_connection.cursor() as cursor:
            columns = "(import_id, row, field, message, value, raw)"
            with cursor.copy(f"COPY import_errors {columns} FROM STDIN") as copy:
                for row, problem, raw in rejected:
                    copy.write_row(
                        (
                            import_id,
                            row,
                            problem.field,
                            problem.message,
                            problem.value,
                            None if raw is None else json.dumps(raw, default=str),
                        )
                    )
        return
    session.execute(
        insert(RowError),
        [
            {
                "import_id": import_id,
                "row": row,
                "field": p.field,
                "message": p.message,
                "value": p.value,
                "raw": raw,
            }
            for row, p, raw in rejected
        ],
    )
