"""Running one import: read the stored file, validate each row, store the batch, commit progress."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update

from app.contacts import store_contacts, store_row_errors
from app.extensions import db, settings, storage
from app.models import Import, utcnow
from app.readers import BrokenRow, UnusableFile, cell_text, read_rows
from app.validation import Columns, Contact, Problem, find_columns, is_blank, validate

log = logging.getLogger(__name__)


class ImportStopped(Exception):
    """The import was cancelled (or finished elsewhere) while this run was working on it."""


@dataclass
class Batch:
    """Rows read since the last commit."""

    contacts: list[Contact] = field(default_factory=list)
    rejected: list[tuple[int, Problem, dict | None]] = field(default_factory=list)
    rejected_rows: int = 0
    last_row: int = 0

    def __len__(self) -> int:
        return len(self.contacts) + self.rejected_rows


def _claim(import_id: str) -> Import | None:
    """Mark the import running, unless it has ended; the row is committed before any work."""
    claimed = db.session.execute(
        update(Import)
        .where(Import.id == import_id, Import.status.in_(("queued", "running")))
        .values(
            status="running",
            attempts=Import.attempts + 1,
            started_at=db.func.coalesce(Import.started_at, utcnow()),
            heartbeat_at=utcnow(),
            error=None,
        )
    )
    db.session.commit()
    if claimed.rowcount == 0:
        return None
    return db.session.get(Import, import_id)


def _commit_batch(imp: Import, batch: Batch) -> None:
    """Store a batch and its counters in one transaction; stop if the import was cancelled."""
    inserted = store_contacts(db.session, imp.id, imp.source, batch.contacts)
    store_row_errors(db.session, imp.id, batch.rejected)
    result = db.session.execute(
        update(Import)
        .where(Import.id == imp.id, Import.status == "running")
        .values(
            processed_rows=Import.processed_rows + len(batch),
            inserted_rows=Import.inserted_rows + inserted,
            duplicate_rows=Import.duplicate_rows + len(batch.contacts) - inserted,
            rejected_rows=Import.rejected_rows + batch.rejected_rows,
            checkpoint=batch.last_row,
            heartbeat_at=utcnow(),
        )
    )
    if result.rowcount == 0:
        db.session.rollback()
        raise ImportStopped(imp.id)
    db.session.commit()


def _finish(import_id: str, status: str, error: str | None = None) -> bool:
    """Record how the import ended; False if it had already ended another way."""
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
    if status == "completed":
        values["total_rows"] = Import.processed_rows
    result = db.session.execute(
        update(Import).where(Import.id == import_id, Import.status == "running").values(values)
    )
    db.session.commit()
    return result.rowcount == 1


def fail(import_id: str, error: str) -> None:
    """Mark a running import failed with a message for its owner."""
    db.session.rollback()
    _finish(import_id, "failed", error)


def _raw(record: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): cell_text(v) for k, v in record.items()}


def _columns_for(headers: list[str]) -> Columns:
    """The name and email columns of a file whose header row is known, or why it cannot import."""
    columns = find_columns(headers)
    shown = ", ".join(headers[:10]) + (", …" if len(headers) > 10 else "")
    if columns.email is None:
        raise UnusableFile(
            f"No email column was found. The columns are: {shown}. "
            "Name one column Email (or E-mail, Email address, Mail)."
        )
    if columns.name is None and columns.first is None and columns.last is None:
        raise UnusableFile(
            f"No name column was found. The columns are: {shown}. "
            "Name one column Name (or Full name), or give First name and Last name."
        )
    return columns


def run(import_id: str) -> None:
    """Import one file from its committed checkpoint to the end.

    Bad rows are recorded and counted; an unusable file fails the import with its reason.
    Other exceptions propagate, so the job can be retried from the checkpoint.
    """
    imp = _claim(import_id)
    if imp is None:
        log.info("import is no longer waiting to run", extra={"import_id": import_id})
        return
    batch_size = settings().batch_size
    try:
        with storage().open(imp.storage_key) as stream:
            table = read_rows(stream, imp.size_bytes)
            fixed = _columns_for(table.columns) if table.columns else None
            db.session.execute(
                update(Import)
                .where(Import.id == imp.id)
                .values(format=table.format, total_rows=table.total_rows)
            )
            db.session.commit()
            by_keys: dict[tuple[str, ...], Columns] = {}
            batch = Batch(last_row=imp.checkpoint)
            for row_number, record in table.rows:
                if row_number <= imp.checkpoint:
                    continue
                batch.last_row = row_number
                if isinstance(record, BrokenRow):
                    batch.rejected.append((row_number, Problem(None, record.message, record.text), None))
                    batch.rejected_rows += 1
                elif not is_blank(record):
                    columns = fixed
                    if columns is None:
                        keys = tuple(record)
                        columns = by_keys.get(keys) or by_keys.setdefault(keys, find_columns(keys))
                    outcome = validate(record, columns)
                    if isinstance(outcome, Contact):
                        batch.contacts.append(outcome)
                    else:
                        raw = _raw(record)
                        batch.rejected.extend((row_number, p, raw) for p in outcome)
                        batch.rejected_rows += 1
                if len(batch) >= batch_size:
                    _commit_batch(imp, batch)
                    batch = Batch(last_row=row_number)
            _commit_batch(imp, batch)
    except UnusableFile as exc:
        log.info("import failed: %s", exc, extra={"import_id": import_id})
        fail(import_id, str(exc))
        return
    except ImportStopped:
        log.info("import was cancelled while running", extra={"import_id": import_id})
        storage().delete(imp.storage_key)
        return
    if _finish(import_id, "completed"):
        log.info("import completed", extra={"import_id": import_id})
        storage().delete(imp.storage_key)
        db.session.execute(update(Import).where(Import.id == import_id).values(storage_key=None))
        db.session.commit()


def release(import_id: str, reason: str) -> None:
    """Put a running import back to queued while its job waits for a retry."""
    db.session.rollback()
    db.session.execute(
        update(Import)
        .where(Import.id == import_id, Import.status == "running")
        .values(status="queued", error=f"Waiting to retry after a temporary failure: {reason}")
    )
    db.session.commit()
