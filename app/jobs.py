"""The RQ job functions. Each takes an import's id and reloads everything else from PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis.exceptions
import sqlalchemy.exc
from flask import has_app_context
from rq import Retry

from app.logs import import_context

log = logging.getLogger(__name__)

# A job handed back on shutdown goes straight back on the queue; each deploy hands it back once,
# so this bound is only there because RQ needs one.
HANDBACKS = 1000

# Failures that say nothing about the file: the job is retried with backoff from its checkpoint.
TRANSIENT = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    # COPY runs on the driver's own cursor, whose errors reach us unwrapped.
    psycopg.OperationalError,
    psycopg.InterfaceError,
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


def _rollback() -> None:
    """Roll back the session; a connection the database dropped fails once, then is discarded."""
    from app.extensions import db

    try:
        db.session.rollback()
    except TRANSIENT:
        db.session.rollback()


def run_import(import_id: str) -> Retry | None:
    """Import one file. A transient failure puts the import back to wait for its retry, whose due
    time PostgreSQL holds (the reconciler queues it then); the last one fails the import.

    On worker shutdown the import goes back to queued and the job asks RQ to requeue it now.
    """
    from app.extensions import db
    from app.imports import pipeline, runs
    from app.storage import StorageUnavailable

    with _app_context(), import_context(import_id):
        try:
            imp = runs.claim(import_id)
            if imp is None:
                log.info("import is not due to run, or another run is alive on it")
                return None
            attempt, retries = imp.attempts, imp.retries
        except Exception:
            # The import is still queued in PostgreSQL: the reconciler queues it again.
            _rollback()
            db.session.remove()
            raise
        try:
            pipeline.run(imp)
        except pipeline.ImportHandedBack:
            log.info("worker is stopping: import handed back after its last committed batch")
            runs.release(import_id, attempt)
            return Retry(max=HANDBACKS)
        except (*TRANSIENT, StorageUnavailable) as exc:
            _rollback()
            delay = runs.retry_delay(retries)
            try:
                if delay is not None:
                    runs.release(import_id, attempt, type(exc).__name__, retry_in=delay)
                    log.warning("import hit a transient error, will retry in %ss: %s", delay, exc)
                    return None
                pipeline.fail(
                    import_id,
                    attempt,
                    "The import could not finish because a service it needs kept failing "
                    f"({type(exc).__name__}). Retry it once the service is back.",
                )
            except TRANSIENT:
                # Still running in PostgreSQL, with a heartbeat that stops now: the reconciler resumes it.
                log.warning("could not record the failure; the reconciler will find the import")
            raise
        except Exception:
            _rollback()
            log.exception("import stopped by an unexpected error")
            pipeline.fail(
                import_id,
                attempt,
                "The import stopped because of an unexpected error on our side. "
                "It has been logged; retry it, or contact support if it happens again.",
            )
            raise
        finally:
            db.session.remove()
    return None


def run_small_imports() -> int:
    """Run the small imports waiting (app.imports.small), several to a transaction, in the worker itself."""
    from app.extensions import db
    from app.imports import small

    with _app_context():
        try:
            return small.run_small_imports()
        finally:
            db.session.remove()


def deliver_webhooks() -> int:
    """Send every webhook message that is due; failures are recorded and retried on schedule."""
    from app.extensions import db
    from app.webhooks.delivery import drain

    with _app_context():
        try:
            return drain()
        except Exception:
            _rollback()
            raise
        finally:
            db.session.remove()


def run_undo(import_id: str) -> Retry | None:
    """Undo one import. A transient failure puts it back to wait for its retry, whose due time
    PostgreSQL holds; the reconciler queues it then.

    On worker shutdown the undo waits again and the job asks RQ to requeue it now.
    """
    from app import undo
    from app.extensions import db, settings
    from app.imports import pipeline, runs

    with _app_context(), import_context(import_id):
        try:
            imp = runs.claim(import_id, undo.UNDOING, waiting=None)
            if imp is None:
                log.info("undo is not due to run, or another run is alive on it")
                return None
            attempt, retries = imp.attempts, imp.retries
        except Exception:
            _rollback()
            db.session.remove()
            raise
        try:
            undo.run(imp)
        except pipeline.ImportHandedBack:
            log.info("worker is stopping: undo handed back after its last committed batch")
            runs.release(import_id, attempt, status=undo.UNDOING)
            return Retry(max=HANDBACKS)
        except TRANSIENT as exc:
            _rollback()
            # Never failed for a passing fault: it waits for its retry (PostgreSQL holds when it is
            # due, as for imports), at the longest backoff once the backoff is spent.
            delay = runs.retry_delay(retries)
            delay = settings().retry_backoff[-1] if delay is None else delay
            try:
                runs.release(import_id, attempt, type(exc).__name__, retry_in=delay, status=undo.UNDOING)
                log.warning("undo hit a transient error, will resume in %ss: %s", delay, exc)
                return None
            except TRANSIENT:
                log.warning("could not record the failure; the reconciler will find the undo")
            raise
        except Exception:
            _rollback()
            log.exception("undo stopped by an unexpected error")
            undo.stop(
                import_id,
                attempt,
                "The undo stopped because of an unexpected error on our side; what it undid so far stays "
                "undone. It has been logged; undo the import again to finish it.",
            )
            raise
        finally:
            db.session.remove()
    return None
