"""Starting an import: store the file, record the import, queue its job. Routes commit."""

from __future__ import annotations

import hashlib
import logging
from typing import BinaryIO

import redis.exceptions
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import bindparam, select, update

from app.extensions import autocommit_engine, db, queue, settings, storage
from app.filenames import clean_filename
from app.models import IMPORT_JSON_COLUMNS, Import, import_json, utcnow
from app.webhooks import record_event

log = logging.getLogger(__name__)

JOB_TIMEOUT = 6 * 3600


# Built once: composing a select of eighteen columns costs more CPU than PostgreSQL takes to run it.
_STATUS = select(*IMPORT_JSON_COLUMNS).where(Import.__table__.c.id == bindparam("import_id"))


class EmptyUpload(Exception):
    """The request carried no bytes to import."""


class ActionRefused(Exception):
    """The import's state does not allow what was asked; the message says why, for its owner."""


def create_import(
    stream: BinaryIO,
    *,
    source: str,
    filename: str | None = None,
    use_resumable: bool = False,
    status: str = "queued",
    mode: str = "skip",
    created_by: str | None = None,
    small: bool = False,
) -> Import:
    """Store the stream and add its import to the session, queued or held in review, recording who
    started it. The caller commits.

    A small JSON request (``small``, app.imports.small) keeps its body in the import's row
    instead: no stored file to write, read and delete for a few rows.
    Raises UploadTooLarge, EmptyUpload, StorageRefused (the store's own rules) or StorageUnavailable.
    """
    body = key = None
    if small:
        body = stream.read()
        size, sha256 = len(body), hashlib.sha256(body).hexdigest()
    else:
        store, limit = storage(), settings().max_upload_size
        stored = store.save(stream, limit, use_resumable=use_resumable, filename=filename)
        if stored.size == 0:
            store.delete(stored.key)
            raise EmptyUpload("The file is empty")
        key, size, sha256 = stored.key, stored.size, stored.sha256
    imp = Import(
        source=source,
        # Only ever shown: any language, no control characters (they broke the download's header).
        filename=clean_filename(filename),
        storage_key=key,
        body=body,
        size_bytes=size,
        sha256=sha256,
        use_resumable=use_resumable,
        mode=mode,
        status=status,
        created_by=created_by,
    )
    db.session.add(imp)
    return imp


def import_status(import_id: str) -> dict[str, object] | None:
    """The import as the JSON API shows it, or None if there is none.

    Clients poll this while their import runs, so it reads the shown columns in one Core
    statement, outside a transaction, instead of loading the ORM object in the session.
    """
    with autocommit_engine().connect() as connection:
        row = connection.execute(_STATUS, {"import_id": import_id}).first()
    return None if row is None else import_json(row)


def enqueue_import(import_id: str) -> bool:
    """Put the committed import's job on the queue; False if Redis cannot take it now.

    The import is safe either way: the reconciler queues a committed import that Redis lacks.
    Retries are not RQ's: PostgreSQL holds when each is due (``Import.retry_at``).
    """
    try:
        queue().enqueue_call(
            "app.jobs.run_import",
            args=(import_id,),
            job_id=import_id,
            timeout=JOB_TIMEOUT,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            description=f"import {import_id}",
        )
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("import not queued, the reconciler will: %s", exc, extra={"import_id": import_id})
        return False
    return True


def _job(import_id: str) -> Job | None:
    try:
        return Job.fetch(import_id, connection=queue().connection)
    except NoSuchJobError:
        return None


def retry_import(imp: Import) -> None:
    """Mark a failed import queued again; the caller commits, then calls ``requeue_import``.

    The job continues from the import's checkpoint, so rows already stored are not read twice.
    """
    if imp.status != "failed":
        raise ActionRefused(f"Only a failed import can be retried; this one is {imp.status}.")
    if imp.undo_state:
        raise ActionRefused(
            "This import was partly undone, so it cannot be retried. Undo it again to finish, "
            "then upload the file as a new import."
        )
    if not imp.storage_key and imp.body is None:
        raise ActionRefused("The file of this import is no longer stored. Upload it again.")
    # No look at RQ's view of the last run: a job whose worker was killed stays "started" there
    # for minutes. A run still winding down is harmless, since the new run's claim fences it off.
    result = db.session.execute(
        update(Import)
        .where(Import.id == imp.id, Import.status == "failed")
        .values(status="queued", error=None, finished_at=None, retries=0, retry_at=None)
    )
    if result.rowcount == 0:
        raise ActionRefused("This import changed in the meantime. Reload the page and try again.")


def requeue_import(import_id: str) -> None:
    """Queue a retried import's job afresh, clearing what RQ kept of its failed run."""
    from app.recovery import forget_job  # the reconciler's module imports this one

    forget_job(queue(), import_id)
    enqueue_import(import_id)


def cancel_import(imp: Import) -> bool:
    """Mark a queued or running import cancelled; the caller commits. True if it had not started.

    A running import stops at its next batch (the pipeline commits a batch only while the import
    is running); a queued one is never claimed, and ``discard_queued_import`` drops its job and file.
    The key stays set until the file is deleted, so the periodic sweep deletes a file that a
    process killed in between left behind.
    """
    for was in ("review", "queued", "running"):
        values: dict[str, object] = {
            "status": "cancelled",
            "finished_at": utcnow(),
            "retry_at": None,
            "body": None,  # a small import's body, which nothing reads any more
        }
        result = db.session.execute(
            update(Import).where(Import.id == imp.id, Import.status == was).values(values)
        )
        if result.rowcount:
            record_event(db.session, imp.id, "import.cancelled")
            return was != "running"
    raise ActionRefused(
        f"Only an import in review, queued or running can be cancelled; this one is {imp.status}."
    )


def discard_queued_import(import_id: str, storage_key: str | None) -> None:
    """After a queued import's cancel is committed: drop its waiting job and its stored file."""
    from app.imports.cleanup import discard_file
    from app.recovery import forget_job  # the reconciler's module imports this one

    job = _job(import_id)
    if job is not None and job.get_status(refresh=False) in (
        JobStatus.QUEUED,
        JobStatus.SCHEDULED,
        JobStatus.DEFERRED,
    ):
        forget_job(queue(), import_id)
    # Cancelled either way; a file that cannot be deleted now is deleted by the periodic sweep.
    discard_file(import_id, storage_key)
