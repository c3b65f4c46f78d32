"""Storing validated contacts and rejected rows in batches, at COPY speed on PostgreSQL."""

from __future__ import annotations

import json
import os
import time
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
# Rows go in file order, so an email repeated within the batch conflicts with its first row, which
# wins; ON CONFLICT also skips emails the source already has. Ids are time-ordered (see batch_id_head):
# random ids scatter primary key inserts over the whole index and halve the insert rate.
_MERGE = (
    "INSERT INTO contacts (id, name, email, source, imported_at, import_id) "
    "SELECT (%(id_head)s || lpad(to_hex(pos), 8, '0'))::uuid, name, email, %(source)s, now(), %(import_id)s "
    "FROM contact_staging ORDER BY pos ON CONFLICT (source, email) DO NOTHING"
)


def batch_id_head() -> str:
    """The first 24 hex digits of a batch's contact ids, in the UUIDv7 layout.

    48 bits of Unix milliseconds, the version 7, 12 random bits, the RFC 4122 variant and 30 more
    random bits (2 beside the variant, 28 after); the last 32 bits are the row's position in the
    batch. Ids of one batch are consecutive, later batches sort after earlier ones, and 42 random
    bits keep concurrent batches apart (a collision would fail the batch on the primary key, never overwrite).
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(6), "big") >> 6  # 42 random bits
    return f"{ms & 0xFFFFFFFFFFFF:012x}7{rand >> 30:03x}{0x8 | (rand >> 28) & 0x3:x}{rand & 0xFFFFFFF:07x}"


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
            cursor.execute(_MERGE, {"source": source, "import_id": import_id, "id_head": batch_id_head()})
            return cursor.rowcount
    cursor = connection.exec_driver_sql(
        "INSERT OR IGNORE INTO contacts (id, name, email, source, imported_at, import_id) "
        "VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP, ?)",
        [(uuid.uuid4().hex, c.name, c.email, source, import_id) for c in contacts],
    )
    return cursor.rowcount


def _storable(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL: show it as the replacement character instead."""
    return value.replace("\x00", "\ufffd") if value else value


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
                            _storable(problem.value),
                            None if raw is None else _storable(json.dumps(raw, default=str)),
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
