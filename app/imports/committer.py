"""Committing an import's batches: contacts, row errors, counters and checkpoint in one transaction.

On PostgreSQL the committer runs in threads of their own, so PostgreSQL stores batches while the
import's thread reads and validates the next. An import that only adds contacts (merge mode
``skip``) is stored by two connections: while one commits batch N, the other copies the new
contacts of batch N+1, and stores the rest of it once batch N is committed.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from app.contacts import (
    ContactBatch,
    Copied,
    SeenEmails,
    Stored,
    WideContactBatch,
    copy_new_contacts,
    copy_row_errors,
    row_error_line,
    store_contacts,
    store_row_errors,
)
from app.dashboard.rollups import record_batch
from app.imports.runs import ours
from app.imports.timings import Timings
from app.merge import merge_contacts
from app.models import Import, utcnow
from app.validation import Problem

COMMITTER_SWITCH_INTERVAL = 0.0002
# How long a batch whose new contacts are copied waits for the batch before it to commit. Longer,
# and its copy is undone and it is stored after that batch instead: a wait this long can be another
# import's transaction waiting for a row of this one, which PostgreSQL cannot see is waiting in turn.
OVERLAP_WAIT = 10.0


class ImportStopped(Exception):
    """The import was cancelled, finished, or claimed by a newer run while this run worked on it."""


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
    session: Session,
    import_id: str,
    attempt: int,
    source: str,
    mode: str,
    batch: Batch,
    timings: Timings,
    previous: Future[None] | None = None,
) -> None:
    """Store a batch with its counters and checkpoint in one transaction, or nothing of it.

    Stops, storing nothing, if the import was cancelled or a newer run claimed it. With
    ``previous`` (the batch before, still being stored by another connection), the batch's new
    contacts are copied first, and the rest is stored once that batch is committed; if it failed,
    so does this one, storing nothing.
    """
    copied: Copied | None = None
    with timings.stage("contacts"):
        if session.get_bind().dialect.name == "postgresql":
            # Rows, row errors, counters and checkpoint commit together, so a commit lost in a
            # database crash loses all of them at once and the rerun redoes the batch from the older
            # checkpoint. The import's final commit stays synchronous: the stored file is deleted after it.
            session.execute(text("SET LOCAL synchronous_commit = off"))
        if previous is not None:
            copied = copy_new_contacts(session, batch.contacts)
    if previous is not None and not _committed(session, previous, timings):
        return _commit_batch(session, import_id, attempt, source, mode, batch, timings)
    with timings.stage("contacts"):
        if mode == "skip":
            stored = store_contacts(session, import_id, source, batch.contacts, copied)
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


def _committed(session: Session, previous: Future[None], timings: Timings) -> bool:
    """Wait for the batch before to commit; False if it took so long that this batch's transaction
    was undone (and that batch has since committed); raise, undoing it, what that batch raised."""
    with timings.stage("previous"):
        try:
            previous.result(timeout=OVERLAP_WAIT)
            return True
        except TimeoutError:
            session.rollback()
            previous.result()
            return False
        except BaseException:
            session.rollback()
            raise


def _count_batch(session: Session, import_id: str, attempt: int, batch: Batch, stored: Stored) -> None:
    """Add the batch to the import's counters and rollups and move its checkpoint; stop if not ours."""
    # A statement on the table, not through the ORM: its bulk update's care for loaded objects (all
    # expired by the commit) cost about as much again as the statement, once a batch.
    result = session.connection().execute(
        update(Import.__table__)
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
    """Commits batches in order, one at a time; on PostgreSQL in threads of their own.

    While PostgreSQL stores batch N the main thread reads and validates batch N+1 (psycopg
    releases the GIL while it waits), so Python and PostgreSQL work at the same time. In merge mode
    ``skip`` a second connection copies batch N+1's new contacts while batch N commits, so both of
    the machine's PostgreSQL backends can work; batches still commit in order, each whole or not at
    all. The threads own the session while a batch is pending; the caller must not touch it until
    ``wait``.
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
        # The sessions batches take turns on: a second one where a batch's COPY may overlap the
        # commit of the one before (its new emails are in no earlier batch, so neither waits for the other).
        self.sessions = [session]
        if self.seen is not None:
            self.sessions.append(Session(bind=session.get_bind()))
        self._submitted = 0
        self._pool = (
            ThreadPoolExecutor(len(self.sessions), thread_name_prefix="import-commit") if threaded else None
        )
        self._pending: deque[Future[None]] = deque()
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
        """Commit the batch once the one before is committed; raise what an earlier one raised.

        Returns once fewer batches than sessions are pending, the new one among them.
        """
        if self._pool is None:
            self._commit(self.session, batch)
            return
        while len(self._pending) >= len(self.sessions):
            self._wait_oldest()
        session = self.sessions[self._submitted % len(self.sessions)]
        self._submitted += 1
        previous = self._pending[-1] if self._pending else None
        self._pending.append(self._pool.submit(self._commit_in_thread, session, batch, previous))

    def _commit_in_thread(self, session: Session, batch: Batch, previous: Future[None] | None) -> None:
        # The session finds its engine through the app, so the thread needs an app context too.
        with self.app.app_context():
            self._commit(session, batch, previous)

    def _commit(self, session: Session, batch: Batch, previous: Future[None] | None = None) -> None:
        with self.timings.batch():
            _commit_batch(
                session, self.import_id, self.attempt, self.source, self.mode, batch, self.timings, previous
            )

    def _wait_oldest(self) -> None:
        pending = self._pending.popleft()
        with self.timings.waited():
            pending.result()

    def wait(self) -> None:
        """Block until every pending batch is committed; raise the first exception (ImportStopped, ...)."""
        while self._pending:
            self._wait_oldest()

    def close(self) -> None:
        """Let the pending batches finish, whatever happens to the caller, and stop the threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pending.clear()
            sys.setswitchinterval(self._switch_interval)
        for session in self.sessions[1:]:
            session.close()
