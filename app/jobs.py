"""The RQ job functions. Each takes an import's id and reloads everything else from PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions
import sqlalchemy.exc
from flask import has_app_context
from rq import get_current_job

from app.logs import import_context

log = logging.getLogger(__name__)

# Failures that say nothing about the file: the job is retried with backoff from its checkpoint.
TRANSIENT = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


@contextmanager
def _app_context() -> Iterator[None]:
    """The worker runs jobs inside its app context; a bare RQ worker gets a new app."""
    if has_app_context():
        yield
        return
    from app import create_app

    with create_app().app_context():
        yield


def run_import(import_id: str) -> None:
    """Import one file. Transient failures raise so RQ retries; the last one fails the import."""
    from app.extensions import db
    from app.imports import pipeline
    from app.storage import StorageUnavailable

    with _app_context(), import_context(import_id):
        try:
            pipeline.run(import_id)
        except (*TRANSIENT, StorageUnavailable) as exc:
            db.session.rollback()
            job = get_current_job()
            try:
                if job is not None and job.retries_left:
                    log.warning("import hit a transient error, will retry: %s", exc)
                    pipeline.release(import_id, type(exc).__name__)
                else:
                    pipeline.fail(
                        import_id,
                        "The import could not finish because a service it needs kept failing "
                        f"({type(exc).__name__}). Retry it once the service is back.",
                    )
            except TRANSIENT:
                log.warning("could not record the failure; the reconciler will find the import")
            raise
        except Exception:
            db.session.rollback()
            log.exception("import stopped by an unexpected error")
            pipeline.fail(
                import_id,
                "The import stopped because of an unexpected error on our side. "
                "It has been logged; retry it, or contact support if it happens again.",
            )
            raise
        finally:
            db.session.remove()
