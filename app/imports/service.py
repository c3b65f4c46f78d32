"""Starting an import: store the file, record the import, queue its job. Routes commit."""

from __future__ import annotations

import logging
from typing import BinaryIO

import redis.exceptions
from rq import Retry

from app.extensions import db, queue, settings, storage
from app.models import Import

log = logging.getLogger(__name__)

JOB_TIMEOUT = 6 * 3600


class EmptyUpload(Exception):
    """The request carried no bytes to import."""


def create_import(
    stream: BinaryIO, *, source: str, filename: str | None = None, use_resumable: bool = False
) -> Import:
    """Store the stream and add its import to the session, queued. The caller commits."""
    store = storage()
    stored = store.save(stream, settings().max_upload_size, use_resumable=use_resumable)
    if stored.size == 0:
        store.delete(stored.key)
        raise EmptyUpload("The file is empty")
    imp = Import(
        source=source,
        filename=(filename or None) and filename[-255:],
        storage_key=stored.key,
        size_bytes=stored.size,
        sha256=stored.sha256,
        use_resumable=use_resumable,
        status="queued",
    )
    db.session.add(imp)
    return imp


def enqueue_import(import_id: str) -> bool:
    """Put the committed import's job on the queue; False if Redis cannot take it now.

    The import is safe either way: the reconciler queues a committed import that Redis lacks.
    """
    backoff = list(settings().retry_backoff)
    try:
        queue().enqueue_call(
            "app.jobs.run_import",
            args=(import_id,),
            job_id=import_id,
            timeout=JOB_TIMEOUT,
            retry=Retry(max=len(backoff), interval=backoff),
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            description=f"import {import_id}",
        )
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("import not queued, the reconciler will: %s", exc, extra={"import_id": import_id})
        return False
    return True
