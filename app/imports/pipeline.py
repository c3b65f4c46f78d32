"""Running one import: read the stored file, validate each row, store the batch, commit progress."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from itertools import dropwhile
from typing import Any, BinaryIO

from flask import current_app
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from app.contacts import (
    ContactBatch,
    SeenEmails,
    Stored,
    WideContactBatch,
    copy_row_errors,
    row_error_line,
    store_contacts,
    store_row_errors,
)
from app.dashboard.rollups import record_batch
from app.extensions import db, settings, storage
from app.fields import Columns, KeysRead, MappingError, find_columns
from app.imports.cleanup import discard_file
from app.imports.runs import Heartbeat, handback_requested, ours
from app.imports.timings import Timings
from app.mapping import choose_columns, columns_for
from app.merge import merge_contacts
from app.models import Import, utcnow
from app.readers import BrokenRow, SkippedRow, Table, UnusableFile, cell_text, read_rows
from app.rows import ContactReader
from app.storage import StoredFileMissing
from app.validation import Contact, Problem, is_blank, plain_contact
from app.webhooks import record_event

log = logging.getLogger(__name__)


COMMITTER_SWITCH_INTERVAL = 0.0002
# Readers kept for the key sets of JSON items and vCards (most files have a handful).
READERS_KEPT = 1024


class ImportStopped(Exception):
    """The import was cancelled, finished, or claimed by a newer run while this run worked on it."""


class ImportHandedBack(Exception):
    """The worker is shutting down: the import stopped after a committed batch and waits for another."""


@dataclass
class Batch:
    """Rows read since the last commit."""

    contacts: ContactBatch
    rejected: list[tuple[int, Problem, dict | None]] = field(default_factory=list)
    rejected_rows: int = 0
    skipped_rows: int = 0
    # Problems of rows stored anyway, without the value each is about: (row, problem, raw row).
    warnings: list[tuple[int, Problem, dict | None]] = field(default_factory=list)
    warning_rows: int = 0
    last_row: int = 0
    # On PostgreSQL, every problem's COPY text for import_errors, made as its row is read, so the
    # committer only sends it; None where problems are stored from the lists above.
    problem_lines: list[str] | None = None
    import_id: str = ""
    # JSON items and vCards: the mapping of the keys read so far, when new keys came in this batch.
    mapping: dict | None = None

    def __len__(self) -> int:
        return len(self.contacts) + self.rejected_rows

    def outcomes(self, stored: Stored) -> dict[str, int]:
        """What the batch's rows came to, once stored: the rollups' outcomes."""
        return {
            "inserted": stored.inserted,
            "updated": stored.updated,
            "unchanged": stored.unchanged,
            "duplicate": len(self.contacts) - stored.total,
            "rejected": self.rejected_rows,
        }

    def keep_problems(
        self, row_number: int, problems: Sequence[Problem], raw: dict | None, level: str = "error"
    ) -> None:
        """Keep a row's problems for the commit: a rejected row's, or (``level`` "warning") a stored one's."""
        (self.rejected if level == "error" else self.warnings).extend((row_number, p, raw) for p in problems)
        if self.problem_lines is not None:
            self.problem_lines.extend(
                row_error_line(self.import_id, row_number, level, p, raw) for p in problems
            )


def _commit_batch(
    session: Session, import_id: str, attempt: int, source: str, mode: str, batch: Batch, timings: Timings
) -> None:
    """Store a batch with its counters and checkpoint in one transaction, or nothing of it.

    Stops, storing nothing, if the import was cancelled or a newer run claimed it.
    """
    with timings.stage("contacts"):
        if session.get_bind().dialect.name == "postgresql":
            # Rows, row errors, counters and checkpoint commit together, so a commit lost in a
            # database crash loses all of them at once and the rerun redoes the batch from the older
            # checkpoint. The import's final commit stays synchronous: the stored file is deleted after it.
            session.execute(text("SET LOCAL synchronous_commit = off"))
        if mode == "skip":
            stored = store_contacts(session, import_id, source, batch.contacts)
        else:
            stored = merge_contacts(session, import_id, source, batch.contacts, mode)
    with timings.stage("row_errors"):
        if batch.problem_lines is not None:
            copy_row_errors(session, batch.problem_lines)
        else:
            store_row_errors(session, import_id, batch.rejected)
            store_row_errors(session, import_id, batch.warnings, level="warning")
    with timings.stage("counters"):
        _count_batch(session, import_id, attempt, batch, stored)
    with timings.stage("commit"):
        session.commit()


def _count_batch(session: Session, import_id: str, attempt: int, batch: Batch, stored: Stored) -> None:
    """Add the batch to the import's counters and rollups and move its checkpoint; stop if not ours."""
    result = session.execute(
        update(Import)
        .where(*ours(import_id, attempt))
        .values(
            processed_rows=Import.processed_rows + len(batch),
            inserted_rows=Import.inserted_rows + stored.inserted,
            updated_rows=Import.updated_rows + stored.updated,
            unchanged_rows=Import.unchanged_rows + stored.unchanged,
            duplicate_rows=Import.duplicate_rows + len(batch.contacts) - stored.total,
            rejected_rows=Import.rejected_rows + batch.rejected_rows,
            skipped_rows=Import.skipped_rows + batch.skipped_rows,
            warning_rows=Import.warning_rows + batch.warning_rows,
            checkpoint=batch.last_row,
            heartbeat_at=utcnow(),
            progress_at=utcnow(),
            **({"mapping": batch.mapping} if batch.mapping else {}),
        )
    )
    if result.rowcount == 0:
        session.rollback()
        raise ImportStopped(import_id)
    record_batch(session, import_id, batch.outcomes(stored), batch.rejected)


class Committer:
    """Commits batches in order, one at a time; on PostgreSQL in a thread of its own.

    While PostgreSQL stores batch N the main thread reads and validates batch N+1 (psycopg
    releases the GIL while it waits), so Python and PostgreSQL work at the same time. The thread
    owns the session while a batch is pending; the caller must not touch it until ``wait``.
    """

    def __init__(self, session: Session, imp: Import, attempt: int) -> None:
        self.session, self.import_id, self.attempt, self.source = session, imp.id, attempt, imp.source
        self.mode = imp.mode or "skip"
        self.app = current_app._get_current_object()
        threaded = session.get_bind().dialect.name == "postgresql"
        # On PostgreSQL, which emails the rows read so far had: a new one goes in by COPY. Fill and
        # update look every contact up instead, so they have no use for it.
        self.seen = SeenEmails(imp.size_bytes) if threaded and self.mode == "skip" else None
        # Whether contacts carry more than a name and an email (set once the header is read).
        self.wide = True
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="import-commit") if threaded else None
        self._pending: Future[None] | None = None
        self.timings = Timings()
        # The committer wakes a dozen times a batch (each statement's answer, each COPY flush) and
        # must take the GIL back from the reading thread each time: at Python's default 5 ms per
        # hand-over PostgreSQL sat idle for seconds per million rows.
        self._switch_interval = sys.getswitchinterval()
        if threaded:
            sys.setswitchinterval(COMMITTER_SWITCH_INTERVAL)

    def batch(self, last_row: int) -> Batch:
        """An empty batch whose rows follow ``last_row``."""
        kind = WideContactBatch if self.wide else ContactBatch
        lines = [] if self._pool is not None else None
        contacts = kind(self.seen, self.source, self.import_id)
        return Batch(contacts, last_row=last_row, problem_lines=lines, import_id=self.import_id)

    def submit(self, batch: Batch) -> None:
        """Commit the batch once the previous one is committed; raise what the previous one raised."""
        self.wait()
        if self._pool is None:
            self._commit(batch)
        else:
            self._pending = self._pool.submit(self._commit_in_thread, batch)

    def _commit_in_thread(self, batch: Batch) -> None:
        # The session finds its engine through the app, so the thread needs an app context too.
        with self.app.app_context():
            self._commit(batch)

    def _commit(self, batch: Batch) -> None:
        with self.timings.batch():
            _commit_batch(
                self.session, self.import_id, self.attempt, self.source, self.mode, batch, self.timings
            )

    def wait(self) -> None:
        """Block until the pending batch is committed; raise its exception (ImportStopped, ...)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            with self.timings.waited():
                pending.result()

    def close(self) -> None:
        """Let the pending batch finish, whatever happens to the caller, and stop the thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            sys.setswitchinterval(self._switch_interval)


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
