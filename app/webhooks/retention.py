"""Forgetting old webhook events and their log, tallying the attempts so the counter never drops."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import ColumnElement, delete, func, select, update

from app.extensions import db
from app.maintenance import every
from app.models import utcnow
from app.webhooks.models import WebhookAttempt, WebhookAttemptTally, WebhookEvent, WebhookMessage

log = logging.getLogger(__name__)

# Delivered and failed messages, and events left with none waiting, are kept this long.
RETENTION = timedelta(days=30)
PER_RUN = 1000


@every("maintenance_interval")
def forget_old_messages() -> None:
    """Delete events older than RETENTION once none of their messages waits, with their log."""
    cutoff = utcnow() - RETENTION
    waiting = select(WebhookMessage.event_id).where(WebhookMessage.status == "pending")
    old = db.session.scalars(
        select(WebhookEvent.id)
        .where(WebhookEvent.created_at < cutoff, WebhookEvent.id.not_in(waiting))
        .limit(PER_RUN)
        .with_for_update(skip_locked=True)  # each old event is forgotten, and tallied, by one process
    ).all()
    if not old:
        return
    messages = select(WebhookMessage.id).where(WebhookMessage.event_id.in_(old))
    _tally_forgotten(WebhookAttempt.message_id.in_(messages))
    db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(messages)))
    db.session.execute(delete(WebhookMessage).where(WebhookMessage.event_id.in_(old)))
    db.session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(old)))
    db.session.commit()
    log.info("deleted %d webhook events older than %d days", len(old), RETENTION.days)


def _tally_forgotten(which: ColumnElement[bool]) -> None:
    """Add the attempts about to be deleted to the tallies by outcome, in the caller's transaction."""
    counts = db.session.execute(
        select(WebhookAttempt.outcome, func.count()).where(which).group_by(WebhookAttempt.outcome)
    ).all()
    for outcome, count in counts:
        added = db.session.execute(
            update(WebhookAttemptTally)
            .where(WebhookAttemptTally.outcome == outcome)
            .values(forgotten=WebhookAttemptTally.forgotten + count)
        )
        if added.rowcount == 0:
            db.session.add(WebhookAttemptTally(outcome=outcome, forgotten=count))
            db.session.flush()
