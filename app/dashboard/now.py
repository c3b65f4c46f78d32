"""What is happening now: the queue, the workers RQ knows alive and what each runs, who waits for whom."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rq import Worker
from sqlalchemy import func, select

from app.dashboard.queries import aware
from app.extensions import db, queue, redis
from app.imports.pace import pace_of
from app.models import Import, utcnow
from app.webhooks.models import WebhookEndpoint

# release() writes this before the reason of a temporary failure.
RETRY_PREFIX = "Waiting to retry"
LISTED = 20


@dataclass(frozen=True)
class QueueNow:
    """The queue as a scrape or the page sees it."""

    depth: int  # jobs waiting in RQ's queue for a worker
    waiting: int  # imports in status queued (PostgreSQL), retries included
    oldest_age_seconds: float  # since the oldest of them was created; 0 when none waits


def queue_now(now: datetime | None = None) -> QueueNow:
    """Jobs in RQ's queue, and the imports waiting to run with the oldest one's age."""
    now = now or utcnow()
    waiting, oldest = db.session.execute(
        select(func.count(), func.min(Import.created_at)).where(Import.status == "queued")
    ).one()
    age = max((now - aware(oldest)).total_seconds(), 0.0) if oldest is not None else 0.0
    return QueueNow(depth=queue().count, waiting=int(waiting), oldest_age_seconds=age)


@dataclass(frozen=True)
class WorkerNow:
    """One live RQ worker and the import it runs, if any."""

    name: str
    state: str
    heartbeat: datetime | None
    imp: Import | None
    rows_per_second: float | None


def workers_now() -> list[WorkerNow]:
    """Every worker whose heartbeat RQ still holds, busy ones first, with its import's progress."""
    workers = Worker.all(connection=redis())
    running = {w.name: w.get_current_job_id() for w in workers}
    ids = [job_id for job_id in running.values() if job_id]
    imports = (
        {imp.id: imp for imp in db.session.scalars(select(Import).where(Import.id.in_(ids)))} if ids else {}
    )
    found = []
    for worker in workers:
        imp = imports.get(running[worker.name] or "")
        pace = pace_of(imp) if imp is not None else None
        found.append(
            WorkerNow(
                name=worker.name,
                state=str(getattr(worker.get_state(), "value", worker.get_state())),
                heartbeat=worker.last_heartbeat,
                imp=imp,
                rows_per_second=pace.rows_per_second if pace else None,
            )
        )
    return sorted(found, key=lambda w: (w.imp is None, w.name))


def worker_states(workers: list[WorkerNow]) -> dict[str, int]:
    """Live workers counted as busy (running an import) or idle."""
    busy = sum(1 for w in workers if w.state == "busy")
    return {"busy": busy, "idle": len(workers) - busy}


def waiting_for_retry() -> list[Import]:
    """Imports queued again after a temporary failure, oldest first."""
    return list(
        db.session.scalars(
            select(Import)
            .where(Import.status == "queued", Import.error.like(f"{RETRY_PREFIX}%"))
            .order_by(Import.created_at)
            .limit(LISTED)
        )
    )


def waiting_for_review() -> list[Import]:
    """Imports stopped in status ``review`` for a person to confirm their columns, oldest first."""
    return list(
        db.session.scalars(
            select(Import).where(Import.status == "review").order_by(Import.created_at).limit(LISTED)
        )
    )


def failing_webhooks() -> list[WebhookEndpoint]:
    """Webhook endpoints failing since their last success, or disabled by DataFlow, longest first."""
    return list(
        db.session.scalars(
            select(WebhookEndpoint)
            .where(
                (WebhookEndpoint.failing_since.is_not(None)) | (WebhookEndpoint.disabled_reason.is_not(None))
            )
            .order_by(WebhookEndpoint.failing_since.nulls_first(), WebhookEndpoint.created_at)
            .limit(LISTED)
        )
    )
