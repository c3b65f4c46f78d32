"""Small JSON imports: the body kept with its import in PostgreSQL, several run to one transaction by
the worker itself, without a work horse.

API clients that sync a CRM post many bodies of a few rows. The regular path costs each of them a
stored file, a work horse forked for its job, a heartbeat thread and half a dozen commits: about
a dozen imports a second with the Procfile's defaults here. A small import (SMALL_ROWS items and
SMALL_BYTES at most, nothing to map or review) keeps its body in ``imports.body`` instead, and
its POST, once committed, pokes the small imports' job (or queues one); that job, run in the
worker process itself, locks the waiting small imports in one statement and stores each one's
contacts, row problems, rollups, counters, final status and webhook event in the same
transaction, committed once for them all.

The guarantees are the regular path's. The claim and the outcome commit together, so a worker
killed mid-batch leaves its imports queued, untouched, with their bodies: the next job takes
them, or the reconciler queues each as a job of its own, which runs it through the regular
pipeline. A worker frozen mid-batch is cut off by PostgreSQL, which then rolls the batch back. A
batch that fails in any way is rolled back whole, and its imports are handed to the regular
pipeline, each as a job of its own in a work horse, with its retries, backoff and failures. Only
imports no run has claimed yet are taken here: a retry or a resumed import is the regular
pipeline's.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from app.contacts import (
    ContactBatch,
    Stored,
    attributes_json,
    batch_id_head,
    store_contacts,
    store_row_errors,
)
from app.dashboard.rollups import record_batch
from app.extensions import db, queue, redis, settings
from app.fields import KeysRead
from app.imports.committer import Batch
from app.imports.pipeline import reader_of, reject_or_keep
from app.imports.review import ImportOptions
from app.imports.runs import run_by
from app.merge import merge_contacts
from app.models import SMALL_WAITING, Import, utcnow
from app.readers import read_rows
from app.rows import ContactReader
from app.webhooks import record_events

log = logging.getLogger(__name__)

# Items and bytes a JSON request may have to be a small import.
SMALL_ROWS = 100
SMALL_BYTES = 64 * 1024
# Imports claimed and committed together.
PER_BATCH = 50
# Seconds a job keeps running batches before it hands on to a new job (a warm shutdown waits for
# the job in hand), and seconds it waits for the next import once none waits, before it ends:
# while imports come more often than that, one job runs them all instead of a job each.
RUN_FOR = 2.0
LINGER = 0.1
# Held while a job of the small imports is queued or running: it looks at PostgreSQL again before
# it lets go, so a POST that finds the key held need not queue another, only poke the job. The
# expiry frees the key of a job lost with its worker or with Redis.
WAKE_KEY = "dataflow:small-imports:awake"
POKE_KEY = "dataflow:small-imports:poke"
WAKE_TTL = 10
JOB = "app.jobs.run_small_imports"

# The rows whose first email wins are in file order, as in the regular pipeline; ids time-ordered.
_INSERT = (
    "INSERT INTO contacts "
    "(id, name, email, phone, company, title, attributes, source, imported_at, import_id) "
    "SELECT (%(id_head)s || lpad(to_hex(pos), 8, '0'))::uuid, name, email, phone, company, title, "
    "attributes::jsonb, %(source)s, now(), %(import_id)s "
    "FROM unnest(%(pos)s::int[], %(name)s::text[], %(email)s::text[], %(phone)s::text[], "
    "%(company)s::text[], %(title)s::text[], %(attributes)s::text[]) "
    "AS t(pos, name, email, phone, company, title, attributes) "
    "ORDER BY pos ON CONFLICT (source, email) DO NOTHING"
)


_IMPORTS = Import.__table__.c
# A small import this transaction locked, completed with what its rows did (bound per import): one
# new version of its row, as if a run had claimed it and run it through.
_COMPLETE = (
    update(Import.__table__)
    .where(_IMPORTS.id == bindparam("import_id"), text(SMALL_WAITING), _IMPORTS.attempts == 0)
    .values(
        status="completed",
        attempts=_IMPORTS.attempts + 1,
        run_by=bindparam("new_run_by"),
        error=None,
        mapping_from="detected",
        mapping=bindparam("new_mapping", type_=_IMPORTS.mapping.type),
        format=bindparam("new_format"),
        processed_rows=bindparam("new_rows"),
        total_rows=bindparam("new_rows"),
        inserted_rows=bindparam("new_inserted"),
        updated_rows=bindparam("new_updated"),
        unchanged_rows=bindparam("new_unchanged"),
        duplicate_rows=bindparam("new_duplicate"),
        rejected_rows=bindparam("new_rejected"),
        skipped_rows=bindparam("new_skipped"),
        warning_rows=bindparam("new_warning"),
        checkpoint=bindparam("new_checkpoint"),
        started_at=bindparam("new_started"),
        heartbeat_at=bindparam("now"),
        progress_at=bindparam("now"),
        finished_at=bindparam("now"),
        body=None,
    )
)


class NotSmall(Exception):
    """An import the small path leaves to the regular pipeline (an item wider than MAX_COLUMNS)."""

    def __init__(self, import_id: str) -> None:
        super().__init__(import_id)
        self.import_id = import_id


def is_small(size: int, items: int, options: ImportOptions, use_resumable: bool) -> bool:
    """Whether a checked JSON request is a small import: few items, a small body, nothing to map or
    review, and no resumable upload to storage asked for."""
    limit = min(SMALL_ROWS, settings().security.max_rows)
    plain = not (options.reads_file or options.review or use_resumable)
    return plain and size <= SMALL_BYTES and items <= limit


def wake() -> None:
    """After a small import is committed: poke the job of the small imports, or queue one if none holds
    the wake-up. One round trip to Redis.

    Without Redis the import waits for the reconciler, which queues it as a job of its own.
    """
    try:
        with redis().pipeline(transaction=False) as pipe:
            pipe.set(WAKE_KEY, 1, nx=True, ex=WAKE_TTL)
            pipe.lpush(POKE_KEY, 1)
            pipe.ltrim(POKE_KEY, 0, 0)  # one poke is as good as many
            woken = pipe.execute()[0]
        if woken:
            _enqueue()
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        log.warning("small imports not woken, the reconciler will queue them: %s", exc)


def _enqueue() -> None:
    # At the front: a free worker takes it before the large imports waiting behind it.
    queue().enqueue_call(JOB, timeout=300, result_ttl=0, failure_ttl=7 * 24 * 3600, at_front=True)


def run_small_imports() -> int:
    """Claim and run batches of small imports while they keep coming; the number run.

    Once none waits, the job waits LINGER seconds for a poke before it ends. After RUN_FOR seconds
    it hands on to a new job and keeps the wake-up held. When it ends it lets the wake-up go, then
    looks once more: an import committed while it was still held had no job queued for it.
    """
    done = 0
    deadline = time.monotonic() + RUN_FOR
    while (left := deadline - time.monotonic()) > 0:
        ran = run_batch()
        done += ran
        if not ran and not redis().blpop([POKE_KEY], timeout=min(LINGER, left)):
            break
    else:
        _hand_on()
        return done
    redis().delete(WAKE_KEY)
    ran = run_batch()
    if ran:
        wake()
    return done + ran


def _hand_on() -> None:
    """Queue the next job of the small imports, keeping the wake-up held for it."""
    redis().expire(WAKE_KEY, WAKE_TTL)
    _enqueue()


@dataclass
class _Claimed:
    """A small import as its claim returned it."""

    id: str
    source: str
    mode: str
    body: bytes


def _claim(session: Session, limit: int) -> list[_Claimed]:
    """Lock up to ``limit`` waiting small imports for this transaction, oldest first.

    The lock is the claim: the batch completes them in the same transaction, so no other state
    is ever committed, and a regular run (or a cancel) that reaches one waits, then finds it
    ended. ``SKIP LOCKED``: each batch takes other imports. One a run ever claimed (a retry, a
    resumed import) is left to the regular pipeline.
    """
    rows = session.execute(
        select(_IMPORTS.id, _IMPORTS.source, _IMPORTS.mode, _IMPORTS.body)
        .where(text(SMALL_WAITING), _IMPORTS.attempts == 0, _IMPORTS.retry_at.is_(None))
        .order_by(_IMPORTS.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [_Claimed(row.id, row.source, row.mode or "skip", row.body) for row in rows]


def run_batch() -> int:
    """Claim waiting small imports and run them in one transaction; the number claimed.

    A batch that fails is rolled back whole and its imports are handed over to the regular
    pipeline; then the next job is queued and the batch's exception raised. An import that is
    NotSmall is handed over alone, and the others are claimed again. A failed claim lets the
    wake-up go, so that the next POST queues a job again.
    """
    from app.jobs import _rollback

    session = db.session()
    try:
        claimed, started = _claim(session, PER_BATCH), utcnow()
    except Exception:
        _rollback()
        with contextlib.suppress(redis_errors.RedisError):
            redis().delete(WAKE_KEY)
        raise
    if not claimed:
        session.rollback()
        return 0
    try:
        # A worker frozen mid-batch must not keep its imports locked: PostgreSQL ends its session.
        _idle_timeout(session)
        readers: dict[tuple[str, ...], ContactReader] = {}
        completed = [_run_one(session, imp, readers) for imp in claimed]
        now, runner = utcnow(), run_by()
        for values in completed:
            values.update(now=now, new_started=started, new_run_by=runner)
        # One round trip for the batch: psycopg sends an executemany in a pipeline.
        result = session.execute(_COMPLETE, completed)
        if result.rowcount != len(claimed):  # claimed in this transaction: nothing else can change them
            raise RuntimeError("small imports changed under their claim")
        record_events(session, [imp.id for imp in claimed], "import.completed")
        session.commit()
    except NotSmall as exc:
        _rollback()
        _hand_over([exc.import_id])
    except Exception as exc:
        _rollback()
        log.warning("a batch of %d small imports failed; each will run alone: %s", len(claimed), exc)
        _hand_over([imp.id for imp in claimed])
        _hand_on()
        raise
    return len(claimed)


def _idle_timeout(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        seconds = int(settings().job_heartbeat_timeout)
        session.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{seconds}s'"))


def _hand_over(import_ids: list[str]) -> None:
    """Leave the imports, unclaimed, to the regular pipeline: each is due at once for a run of its own,
    which ``queue_due_retries`` queues as a job (in a work horse, with its retries and failures).

    If even that cannot be written, they stay waiting, and the next job or the reconciler finds them.
    """
    from app.jobs import TRANSIENT, _rollback

    try:
        db.session.execute(
            update(Import)
            .where(Import.id.in_(import_ids), Import.status == "queued", Import.attempts == 0)
            .values(retry_at=utcnow())
        )
        db.session.commit()
    except TRANSIENT as exc:
        _rollback()
        log.warning("small imports not handed over, they wait for the next run: %s", exc)


def _run_one(
    session: Session, imp: _Claimed, readers: dict[tuple[str, ...], ContactReader]
) -> dict[str, Any]:
    """Read, validate and store one claimed import and its rollups; the values that complete it."""
    config = settings()
    table = read_rows(io.BytesIO(imp.body), len(imp.body))
    batch = Batch(ContactBatch(None, imp.source, imp.id))
    keys_read = KeysRead()
    for row_number, row in table.rows:
        if not isinstance(row, dict) or len(row) > config.security.max_columns:
            raise NotSmall(imp.id)
        keys = tuple(row)
        keys_read.add(keys)
        reader = reader_of(readers, keys, config.default_phone_region)
        reject_or_keep(reader, reader.cells(row), keys, row_number, batch)
        batch.last_row = row_number
    contacts = batch.contacts
    if imp.mode != "skip":
        stored = merge_contacts(session, imp.id, imp.source, contacts, imp.mode)
    else:
        stored = _store_new(session, imp, contacts)
    store_row_errors(session, imp.id, batch.rejected)
    store_row_errors(session, imp.id, batch.warnings, level="warning")
    outcomes = batch.outcomes(stored)
    record_batch(session, imp.id, outcomes, batch.rejected)
    return {
        "import_id": imp.id,
        "new_format": table.format,
        "new_mapping": keys_read.new_mapping(),
        "new_rows": len(batch),
        **{f"new_{outcome}": count for outcome, count in outcomes.items()},
        "new_skipped": batch.skipped_rows,
        "new_warning": batch.warning_rows,
        "new_checkpoint": batch.last_row,
    }


def _store_new(session: Session, imp: _Claimed, contacts: ContactBatch) -> Stored:
    """Insert the contacts whose email the source lacks, in one statement on PostgreSQL.

    ``store_contacts`` stages rows in a table emptied at commit, which would carry one import's rows
    into the next of the same transaction; SQLite's branch of it stages nothing.
    """
    if not contacts:
        return Stored(0)
    if session.get_bind().dialect.name != "postgresql":
        return store_contacts(session, imp.id, imp.source, contacts)
    columns: dict[str, list[Any]] = {
        "pos": list(range(len(contacts))),
        "name": [c.name for c in contacts],
        "email": [c.email for c in contacts],
        "phone": [c.phone for c in contacts],
        "company": [c.company for c in contacts],
        "title": [c.title for c in contacts],
        "attributes": [attributes_json(c.attributes) for c in contacts],
    }
    params = {"id_head": batch_id_head(), "source": imp.source, "import_id": imp.id, **columns}
    cursor = session.connection().exec_driver_sql(_INSERT, params)
    return Stored(cursor.rowcount)
