"""Running one import: read the stored file, validate each row, store the batch, commit progress."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import dropwhile
from typing import Any, BinaryIO

from sqlalchemy import update

from app.extensions import db, settings, storage
from app.fields import Columns, KeysRead, MappingError, find_columns
from app.imports.cleanup import discard_file
from app.imports.committer import Batch, Committer, ImportStopped
from app.imports.runs import Heartbeat, handback_requested, ours
from app.mapping import choose_columns, columns_for
from app.models import Import, utcnow
from app.readers import BrokenRow, SkippedRow, Table, UnusableFile, cell_text, read_rows
from app.rows import ContactReader
from app.storage import StoredFileMissing
from app.validation import Contact, Problem, is_blank, plain_contact
from app.webhooks import record_event

log = logging.getLogger(__name__)


# Readers kept for the key sets of JSON items and vCards (most files have a handful).
READERS_KEPT = 1024


class ImportHandedBack(Exception):
    """The worker is shutting down: the import stopped after a committed batch and waits for another."""


def _open(imp: Import) -> AbstractContextManager[BinaryIO]:
    """The import's file: a small import's body kept with it (app.imports.small), or the stored file."""
    if imp.storage_key is None and imp.body is not None:
        return io.BytesIO(imp.body)
    return storage().open(imp.storage_key)


def _finish(import_id: str, attempt: int, status: str, error: str | None = None) -> bool:
    """Record how the import ended; False if it had ended another way or another run owns it."""
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
    if status == "completed":
        values["total_rows"] = Import.processed_rows
        values["body"] = None  # a failed import keeps its body, for a retry
    result = db.session.execute(update(Import).where(*ours(import_id, attempt)).values(values))
    if result.rowcount == 1:  # the event commits with the status, or neither does
        record_event(db.session, import_id, f"import.{status}")
    db.session.commit()
    return result.rowcount == 1


def fail(import_id: str, attempt: int, error: str) -> None:
    """Mark the import this run claimed failed, with a message for its owner."""
    db.session.rollback()
    _finish(import_id, attempt, "failed", error)


def _raw(headers: Sequence[str], cells: Sequence[Any]) -> dict[str, str]:
    """The row as it came, for the page and rejected.csv (cells past the header under their position)."""
    raw = {str(k): cell_text(v) for k, v in zip(headers, cells, strict=False)}
    for position in range(len(headers), len(cells)):
        raw[f"Column {position + 1}"] = cell_text(cells[position])
    return raw


def _columns_for(imp: Import, table: Table) -> tuple[Columns, str]:
    """Which columns fill which field (given, saved for the source, or detected) and where that came from.

    A mapping the import was given, or recorded by an earlier run, decides; else the saved mapping of
    the source when the file's columns match it; else detection, by header and content.
    """
    try:
        if imp.mapping and imp.mapping_from:
            return columns_for(imp.mapping, table.columns), imp.mapping_from
        return choose_columns(
            db.session,
            imp.source,
            None,
            table.columns,
            table.data_sample(),
            headerless=table.header_row is None,
        )
    except MappingError as exc:  # checked when the import was accepted; the file cannot have changed
        raise UnusableFile(str(exc)) from exc


def _check_width(columns: list[str], limit: int) -> None:
    """A header wider than MAX_COLUMNS is refused: no contact list needs that many columns."""
    if len(columns) > limit:
        raise UnusableFile(
            f"The file has {len(columns):,} columns; at most {limit:,} are read. "
            "Remove the columns you do not need (keep the name and email) and upload it again."
        )


def _too_many_rows(limit: int, row_number: int) -> UnusableFile:
    return UnusableFile(
        f"The file has more than {limit:,} rows, the most one import takes (MAX_ROWS). "
        f"The first {limit:,} were imported; nothing from row {row_number:,} on was. "
        "Split the rest into another file and import that."
    )


@dataclass(frozen=True)
class Limits:
    """MAX_ROWS and MAX_COLUMNS, and the rows earlier runs of the import already processed."""

    max_rows: int
    max_columns: int
    processed: int


def _is_blank_row(row: Any) -> bool:
    if isinstance(row, SkippedRow):
        return True
    if isinstance(row, BrokenRow):
        return False
    if type(row) is list:
        return all(cell_text(cell).strip() == "" for cell in row)
    return is_blank(row)


def run(imp: Import) -> None:
    """Import a claimed file from its committed checkpoint to the end.

    Bad rows are recorded and counted; an unusable file fails the import with its reason.
    Raises ImportHandedBack when the worker asks for the import back between two batches;
    other exceptions propagate, so the job can be retried from the checkpoint.
    """
    import_id, attempt, checkpoint = imp.id, imp.attempts, imp.checkpoint
    config = settings()
    batch_size = config.batch_size
    beat = Heartbeat(db.engine, import_id, attempt, every=config.job_heartbeat_timeout / 4)
    try:
        with beat, _open(imp) as stream:
            table = read_rows(stream, imp.size_bytes, header_row=imp.header_row, sheet=imp.sheet)
            _check_width(table.columns, config.security.max_columns)
            fixed, mapping_from = _columns_for(imp, table) if table.columns else (None, None)
            db.session.execute(
                update(Import)
                .where(*ours(import_id, attempt))
                .values(
                    format=table.format,
                    total_rows=table.total_rows,
                    # The lines above the table are the same on every run; the footer's count in batches.
                    **({"skipped_rows": table.skipped_rows} if not checkpoint else {}),
                    mapping=fixed.to_dict() if fixed is not None else imp.mapping,
                    mapping_from=mapping_from or imp.mapping_from or "detected",
                    progress_at=utcnow(),
                )
            )
            db.session.commit()
            # The committer's thread owns the session from here: the loop keeps what it needs in locals.
            committer = Committer(db.session(), imp, attempt)
            committer.wide = fixed is None or not fixed.is_plain
            try:
                limits = Limits(config.security.max_rows, config.security.max_columns, imp.processed_rows)
                region = config.default_phone_region
                # JSON items have no header: a mapping given for them applies to each item it fits.
                given = imp.mapping if not table.columns and imp.mapping_from in ("given", "saved") else None
                # Else they are read by their own keys, and the import records where those went.
                keys_read = KeysRead(imp.mapping) if not table.columns and given is None else None
                batches = _read_batches(
                    table, fixed, checkpoint, batch_size, committer, limits, region, given, keys_read
                )
                for _ in batches:
                    if handback_requested.is_set():
                        committer.wait()  # hand back only after the batch is committed
                        raise ImportHandedBack(import_id)
                committer.wait()
                if config.import_timings:
                    committer.timings.report(import_id)
            finally:
                committer.close()
    except (UnusableFile, StoredFileMissing) as exc:
        log.info("import failed: %s", exc, extra={"import_id": import_id})
        fail(import_id, attempt, str(exc))
        return
    except ImportStopped:
        db.session.rollback()
        if db.session.get(Import, import_id).status == "cancelled":
            log.info("import was cancelled while running", extra={"import_id": import_id})
            discard_file(import_id, imp.storage_key)
        else:
            log.info("a newer run took the import over", extra={"import_id": import_id})
        return
    if _finish(import_id, attempt, "completed"):
        log.info("import completed", extra={"import_id": import_id})
        discard_file(import_id, imp.storage_key)


def _read_batches(
    table: Table,
    fixed: Columns | None,
    checkpoint: int,
    batch_size: int,
    committer: Committer,
    limits: Limits,
    phone_region: str | None,
    mapping: dict | None = None,
    keys_read: KeysRead | None = None,
) -> Iterator[None]:
    """Validate the rows after the checkpoint into batches, hand each to the committer, yield after each.

    The row past MAX_ROWS is never stored: the rows before it are committed, then the file fails.
    """

    def submit(batch: Batch) -> None:
        if keys_read is not None:
            batch.mapping = keys_read.new_mapping()
        committer.submit(batch)

    by_keys: dict[tuple[str, ...], ContactReader] = {}
    headers = table.columns
    reader = ContactReader(fixed, headers, phone_region) if fixed is not None else None
    # A file of just a name and an email column: plain rows are made into contacts from their two
    # cells, and only a row that needs a careful look goes through the reader.
    name_at = email_at = -1
    if fixed is not None and fixed.is_plain:
        name_at, email_at = headers.index(fixed.name), headers.index(fixed.emails[0])  # type: ignore[arg-type]
    rows = table.rows
    if checkpoint:  # rows come in order: skip those an earlier run committed
        rows = dropwhile(lambda numbered: numbered[0] <= checkpoint, rows)
    submitted = limits.processed
    batch = committer.batch(checkpoint)
    contacts, append = batch.contacts, batch.contacts.append
    # The batch is full at BATCH_SIZE rows, or earlier when MAX_ROWS rows are in.
    room = min(batch_size, limits.max_rows - submitted)
    for row_number, row in rows:
        if len(contacts) + batch.rejected_rows >= room:
            if room < batch_size and not _is_blank_row(row):  # one row past MAX_ROWS
                submit(batch)
                committer.wait()
                raise _too_many_rows(limits.max_rows, row_number)
            if room == batch_size:
                submitted += room
                submit(batch)
                yield
                batch = committer.batch(batch.last_row)
                contacts, append = batch.contacts, batch.contacts.append
                room = min(batch_size, limits.max_rows - submitted)
        batch.last_row = row_number
        if isinstance(row, dict) and len(row) > limits.max_columns:
            row = BrokenRow(f"This item has {len(row):,} fields; at most {limits.max_columns:,} are read", "")
        if type(row) is list:
            contact = plain_contact(row[name_at], row[email_at]) if name_at >= 0 else None
            if contact is not None:
                append(contact)
            else:
                reject_or_keep(reader, row, headers, row_number, batch)  # type: ignore[arg-type]
        elif isinstance(row, BrokenRow):
            batch.keep_problems(row_number, (Problem(None, row.message, row.text),), None)
            batch.rejected_rows += 1
        elif type(row) is SkippedRow:
            batch.skipped_rows += 1
        else:
            keys = tuple(row)
            if keys_read is not None and keys not in by_keys:
                keys_read.add(keys)
            record_reader = reader_of(by_keys, keys, phone_region, mapping)
            reject_or_keep(record_reader, record_reader.cells(row), keys, row_number, batch)
    submit(batch)


def reader_of(
    readers: dict[tuple[str, ...], ContactReader],
    keys: tuple[str, ...],
    phone_region: str | None,
    mapping: dict | None = None,
) -> ContactReader:
    """The reader of JSON items with these keys, made once per key set and kept in ``readers``."""
    reader = readers.get(keys)
    if reader is None:
        if len(readers) >= READERS_KEPT:  # items of ever new keys: memory stays flat
            readers.clear()
        reader = readers[keys] = ContactReader(_record_columns(keys, mapping), keys, phone_region)
    return reader


def _record_columns(keys: tuple[str, ...], mapping: dict | None) -> Columns:
    """A JSON item's columns: the import's mapping when it fits the item's keys, else by the keys."""
    if mapping:
        try:
            return columns_for(mapping, keys)
        except MappingError:
            pass  # an item without a mapped key is read by its own keys, and says what it lacks
    return find_columns(keys)


def reject_or_keep(
    reader: ContactReader, cells: list[Any], headers: Sequence[str], row_number: int, batch: Batch
) -> None:
    """Read one row into the batch: a contact (with its warnings), the row's problems, or nothing if blank."""
    outcome = reader.read(cells)
    if isinstance(outcome, Contact):
        batch.contacts.append(outcome)
        if outcome.warnings:
            batch.keep_problems(row_number, outcome.warnings, _raw(headers, cells), level="warning")
            batch.warning_rows += 1
    elif not all(cell_text(cell).strip() == "" for cell in cells):  # a valid row is never blank
        batch.keep_problems(row_number, outcome, _raw(headers, cells))
        batch.rejected_rows += 1
