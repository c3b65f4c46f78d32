"""The reconciler: PostgreSQL says which imports must run; it makes Redis agree."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime, timedelta

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import and_, or_, select, update

from app.extensions import db, queue, settings
from app.imports.runs import UNDO_JOB_PREFIX
from app.imports.service import enqueue_import
from app.maintenance import every
from app.models import Import, aware, utcnow
from app.webhooks.delivery import enqueue_due

log = logging.getLogger(__name__)

# Imports looked at per run; the next run takes the rest.
PER_RUN = 500


# Imports seen queued in PostgreSQL while RQ had them only as taken by a worker: the monotonic
# time each was first seen so. A live worker claims a job it takes within moments.
_taken: dict[str, float] = {}


def _waiting_in_redis(jobs: Queue, import_ids: list[str], grace: float) -> set[str]:
    """The ids whose job Redis holds: on the queue, or taken by a worker within ``grace`` seconds.

    A job a worker took (the intermediate queue, the started registry) whose import is still
    queued in PostgreSQL after ``grace`` belonged to a worker that died before its claim: RQ
    would keep it there for minutes (until the started entry expires, or its maintenance runs).
    """
    if not import_ids:
        return set()
    connection = jobs.connection
    now = connection.time()[0]
    # One MULTI/EXEC, so a job moving from the queue to a worker is seen in one place or the other.
    with connection.pipeline(transaction=True) as pipe:
        # Entries of the started registry are "<job id>:<execution id>", scored by their expiry.
        pipe.zrangebyscore(jobs.started_job_registry.key, now, "+inf")
        for import_id in import_ids:
            pipe.lpos(jobs.key, import_id)
            pipe.lpos(jobs.intermediate_queue_key, import_id)
        started, *answers = pipe.execute()
    taken = {member.decode().split(":", 1)[0] for member in started}
    found = set()
    seen_at = time.monotonic()
    for index, import_id in enumerate(import_ids):
        on_queue, in_transit = answers[index * 2], answers[index * 2 + 1]
        if on_queue is not None:
            found.add(import_id)
            _taken.pop(import_id, None)
        elif in_transit is not None or import_id in taken:
            if seen_at - _taken.setdefault(import_id, seen_at) < grace:
                found.add(import_id)
        else:
            _taken.pop(import_id, None)
    for import_id in set(_taken) - set(import_ids):  # claimed or ended since
        del _taken[import_id]
    return found


def forget_job(jobs: Queue, job_id: str) -> None:
    """Remove every trace RQ keeps of a job, so a job enqueued again under its id really runs.

    A dead worker leaves the id in the started registry: when that entry expires, RQ would
    retry or fail the job again, under the feet of the new run. A failed or finished job
    keeps its id in those registries.
    """
    connection = jobs.connection
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(job_id, connection=connection).delete(remove_from_queue=True)
    started_key = jobs.started_job_registry.key
    stale = [m for m in connection.zrange(started_key, 0, -1) if m.decode().split(":", 1)[0] == job_id]
    with connection.pipeline() as pipe:
        if stale:
            pipe.zrem(started_key, *stale)
        for registry in (
            jobs.scheduled_job_registry,
            jobs.failed_job_registry,
            jobs.finished_job_registry,
            jobs.deferred_job_registry,
            jobs.canceled_job_registry,
        ):
            pipe.zrem(registry.key, job_id)
        pipe.lrem(jobs.key, 0, job_id)
        pipe.lrem(jobs.intermediate_queue_key, 0, job_id)
        pipe.execute()


def _requeue(import_id: str, why: str) -> None:
    """Queue the import's job afresh; the caller holds the row locked and commits afterwards."""
    forget_job(queue(), import_id)
    if enqueue_import(import_id):
        log.warning("import re-queued: %s", why, extra={"import_id": import_id})


@every("reconcile_interval")
def reconcile() -> None:
    """Re-queue imports (and undos) whose worker died or is stuck, and queued ones that Redis has lost.

    Rows are taken with ``FOR UPDATE SKIP LOCKED``, so workers running this at the same
    time each take different imports. The resumed job continues from the checkpoint.
    """
    config = settings()
    now = utcnow()
    silent = now - timedelta(seconds=config.job_heartbeat_timeout)
    stalled = now - timedelta(seconds=config.stall_timeout)
    lost = db.session.execute(
        select(Import.id, Import.heartbeat_at)
        .where(
            Import.status == "running",
            or_(Import.heartbeat_at.is_(None), Import.heartbeat_at < silent, Import.progress_at < stalled),
        )
        .limit(PER_RUN)
        .with_for_update(skip_locked=True)
    ).all()
    for import_id, heartbeat_at in lost:
        if heartbeat_at is None or aware(heartbeat_at) < silent:
            why, shown = "its worker stopped sending heartbeats", "Resumed after its worker stopped answering"
        else:
            # Alive but stuck: back to queued fences the old run off; its heartbeat then kills it.
            minutes = config.stall_timeout / 60
            why = f"it made no progress for {config.stall_timeout:g}s"
            shown = f"Resumed after it made no progress for {minutes:g} minutes"
        # Back to queued in the same commit: the new job's claim then needs no stale heartbeat.
        db.session.execute(
            update(Import).where(Import.id == import_id).values(status="queued", error=shown, run_by=None)
        )
        _requeue(import_id, why)
    db.session.commit()

    # A moment's grace: the request that committed an import may still be queueing it.
    settled = now - timedelta(seconds=config.reconcile_interval)
    queued = db.session.scalars(
        select(Import.id)
        .where(
            Import.status == "queued",
            Import.created_at < settled,
            Import.retry_at.is_(None),  # a retry is queued by queue_due_retries once due
        )
        .limit(PER_RUN)
        .with_for_update(skip_locked=True)
    ).all()
    grace = max(config.job_heartbeat_timeout, config.reconcile_interval)
    waiting = _waiting_in_redis(queue(), list(queued), grace)
    for import_id in queued:
        if import_id not in waiting:
            _requeue(import_id, "Redis had no job for it")
    db.session.commit()
    _reconcile_undos(silent, settled, grace)


@every("webhook_poll_interval")
def reconcile_webhooks() -> None:
    """Queue a delivery job when a webhook message is due (a retry, or a job Redis lost)."""
    enqueue_due()


@every(1)
def queue_due_retries() -> None:
    """Queue the imports whose retry after a transient failure is due.

    PostgreSQL holds when each retry is due, so a retry never waits on RQ's scheduler (which a
    killed worker tree can leave without an owner for many minutes). Clearing ``retry_at`` in
    the same commit marks the wake-up sent; if Redis loses it, ``reconcile`` queues it again.
    """
    from app.undo import UNDOING, enqueue_undo  # it imports this module

    due = db.session.execute(
        select(Import.id, Import.status)
        .where(Import.status.in_(("queued", UNDOING)), Import.retry_at <= utcnow())
        .order_by(Import.retry_at)
        .limit(PER_RUN)
        .with_for_update(skip_locked=True)
    ).all()
    for import_id, status in due:
        db.session.execute(update(Import).where(Import.id == import_id).values(retry_at=None))
        if status == UNDOING:
            enqueue_undo(import_id)
        else:
            _requeue(import_id, "its retry is due")
    db.session.commit()


def _reconcile_undos(stale: datetime, settled: datetime, grace: float) -> None:
    """Re-queue undos whose worker died, and waiting undos that Redis has lost."""
    from app.undo import enqueue_undo  # it imports this module

    rows = db.session.execute(
        select(Import.id, Import.heartbeat_at)
        .where(
            Import.status == "undoing",
            Import.retry_at.is_(None),  # a retry is queued by queue_due_retries once due
            or_(
                and_(Import.heartbeat_at.is_(None), Import.undo_requested_at < settled),
                Import.heartbeat_at < stale,
            ),
        )
        .limit(PER_RUN)
        .with_for_update(skip_locked=True)
    ).all()
    waiting = _waiting_in_redis(queue(), [UNDO_JOB_PREFIX + import_id for import_id, _ in rows], grace)
    for import_id, heartbeat_at in rows:
        lost = heartbeat_at is not None or UNDO_JOB_PREFIX + import_id not in waiting
        if lost and enqueue_undo(import_id):
            log.warning("undo re-queued", extra={"import_id": import_id})
    db.session.commit()
