"""A run's hold on its import: the claim, the heartbeat, the fence of its attempt, the release."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from datetime import timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update

from app.extensions import autocommit_engine, db, settings
from app.models import Import, aware, utcnow

log = logging.getLogger(__name__)

# The RQ job id of an import's undo is this and the import's id (the import's own job has its id).
UNDO_JOB_PREFIX = "undo-"

# Set in a worker that is shutting down: the running import stops after its current batch.
handback_requested = threading.Event()
# Set in a work horse: a run that lost its import and does not stop by itself is killed.
in_work_horse = threading.Event()


def ours(import_id: str, attempt: int, status: str = "running") -> tuple:
    """The row as this run claimed it: a newer claim (a higher attempt) fences this run off.

    ``status`` is what the run's work is: "running" for an import, "undoing" for its undo.
    """
    return (Import.id == import_id, Import.status == status, Import.attempts == attempt)


def run_by(pid: int | None = None) -> str:
    """Who runs an import: this machine and the work horse's process id."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"[:255]


def claim(import_id: str, status: str = "running", waiting: str | None = "queued") -> Import | None:
    """Mark the import ``status`` for this run, committed before any work.

    An import ``waiting`` is claimed once any retry it waits for is due; so is one in ``status``
    whose heartbeat stopped (its worker died, or, for an undo, which waits with no heartbeat, none
    has started). None when the import has ended, waits for a later retry, or another run is
    alive on it.
    """
    now = utcnow()
    stale = now - timedelta(seconds=settings().job_heartbeat_timeout)
    due = or_(Import.retry_at.is_(None), Import.retry_at <= now)
    abandoned = and_(Import.status == status, or_(Import.heartbeat_at.is_(None), Import.heartbeat_at < stale))
    # An undo waits in its own status, and its retry's due time too.
    claimable = (
        and_(abandoned, due) if waiting is None else or_(and_(Import.status == waiting, due), abandoned)
    )
    claimed = db.session.execute(
        update(Import)
        .where(Import.id == import_id, claimable)
        .values(
            status=status,
            attempts=Import.attempts + 1,
            started_at=db.func.coalesce(Import.started_at, now),
            heartbeat_at=now,
            progress_at=now,
            retry_at=None,
            run_by=run_by(),
            error=None,
        )
    )
    db.session.commit()
    if claimed.rowcount == 0:
        return None
    return db.session.get(Import, import_id)


class Heartbeat:
    """Beats on the import's row from a thread, so a long batch or a slow file open still shows life.

    The reconciler takes back an import whose beats stop for JOB_HEARTBEAT_TIMEOUT seconds, or
    whose progress stops for STALL_TIMEOUT. A beat that finds the import no longer this run's
    gives the run one more beat's time to notice; in a work horse, a run still going then is
    stuck (a read that never returns, a lock wait) and its process is killed.
    """

    def __init__(
        self, engine: Engine, import_id: str, attempt: int, every: float, status: str = "running"
    ) -> None:
        self.engine = engine
        self.import_id = import_id
        self.attempt = attempt
        self.every = every
        self.status = status
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat {import_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopped.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                with self.engine.begin() as connection:
                    beat = connection.execute(
                        update(Import)
                        .where(*ours(self.import_id, self.attempt, self.status))
                        .values(heartbeat_at=utcnow())
                    )
            except Exception as exc:  # the batch loop meets the same failure and retries the job
                log.warning("heartbeat failed: %s", exc, extra={"import_id": self.import_id})
                continue
            if beat.rowcount == 0:  # the import ended or a newer run owns it; its next commit stops
                if not self.stopped.wait(self.every) and in_work_horse.is_set():
                    log.error(
                        "the import was taken from this run, which did not stop: killing its process",
                        extra={"import_id": self.import_id},
                    )
                    logging.shutdown()
                    os.kill(os.getpid(), signal.SIGKILL)
                return


def release(
    import_id: str,
    attempt: int,
    reason: str | None = None,
    retry_in: float | None = None,
    status: str = "running",
) -> None:
    """Put the import this run claimed back to waiting, for another run.

    An import waits queued; an undo (``status`` "undoing") waits undoing with no heartbeat. With
    a reason, the import shows that it waits after a temporary failure, and ``retry_in`` seconds
    from now is when its retry is due: PostgreSQL holds it, and the reconciler queues the retry then.
    """
    db.session.rollback()
    values: dict[str, Any] = {
        "status": "queued" if status == "running" else status,
        "heartbeat_at": None,
        "run_by": None,
    }
    if reason:
        values["error"] = f"Waiting to retry after a temporary failure: {reason}"
        values["retry_at"] = utcnow() + timedelta(seconds=retry_in or 0)
        values["retries"] = Import.retries + 1
    else:
        values["error"] = None
    db.session.execute(update(Import).where(*ours(import_id, attempt, status)).values(values))
    db.session.commit()


def retry_delay(retries: int) -> float | None:
    """Seconds before the next retry after ``retries`` transient failures; None when none is left."""
    backoff = settings().retry_backoff
    return backoff[retries] if retries < len(backoff) else None


# What lost_by says of a horse whose import is worked by no run: waiting (taken back by the
# reconciler, handed back, not claimed yet) or ended. A horse claims, hands back or finishes within
# moments of that; one that stays alive meanwhile is stuck.
LEFT_BEHIND = "its import is worked by no run, and it did not exit"


def lost_by(job_id: str, horse: str) -> str | None:
    """Why ``horse`` (a ``run_by``) no longer runs its import (or undo, by the job's id): a newer run
    took it over, its own heartbeat stopped twice over (the whole process is frozen), or
    LEFT_BEHIND. None while all is well, and for a job that is neither."""
    with autocommit_engine().connect() as connection:
        row = connection.execute(
            select(Import.status, Import.run_by, Import.heartbeat_at).where(
                Import.id == job_id.removeprefix(UNDO_JOB_PREFIX)
            )
        ).first()
    if row is None:
        return None
    # A claim sets the heartbeat; an undo waits "undoing" without one.
    if row.status not in ("running", "undoing") or row.heartbeat_at is None:
        return LEFT_BEHIND
    if row.run_by != horse:  # a newer run claimed it
        return "a newer run took the import over"
    silent = utcnow() - timedelta(seconds=2 * settings().job_heartbeat_timeout)
    if aware(row.heartbeat_at) < silent:
        # Frozen, perhaps inside a transaction whose row locks keep the reconciler away.
        return "its heartbeat stopped while the process lives"
    return None


def abandon(job_id: str, horse: str) -> None:
    """Mark the import's (or its undo's) heartbeat stopped, because ``horse`` (its ``run_by``) died
    running it.

    A new run may then claim it at once instead of waiting for JOB_HEARTBEAT_TIMEOUT. A newer
    run that already took it over is left alone.
    """
    import_id = job_id.removeprefix(UNDO_JOB_PREFIX)
    db.session.execute(
        update(Import)
        .where(Import.id == import_id, Import.status.in_(("running", "undoing")), Import.run_by == horse)
        .values(heartbeat_at=None)
    )
    db.session.commit()
